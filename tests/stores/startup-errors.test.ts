import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import pg from 'pg'
import { describeError, GatehouseError } from '../../src/errors.ts'
import { openStore } from '../../src/session/stores/open-store.ts'
import { publicLocation } from '../../src/session/stores/startup-error.ts'
import { freePort, startupError } from '../helpers/startup-errors.ts'
import { sampleRecord } from './contract.ts'

// Every case runs against a real server: Redis at 6379, PostgreSQL at 5432 (trust auth, database
// "test"), a Redis with a password started here, and free loopback ports where nothing listens.
const REDIS_URL = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const POSTGRES_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const HOUR = 3_600_000
const run = randomBytes(4).toString('hex')
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-startup-'))
after(() => rmSync(dir, { recursive: true, force: true }))

describe('Redis start-up errors', () => {
  const password = `pw-${randomBytes(6).toString('hex')}`
  let server: ChildProcess
  let securedPort = 0
  const admin = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  admin.on('error', () => {})

  before(async () => {
    await admin.connect()
    securedPort = await freePort()
    server = spawn(
      'redis-server',
      [
        '--port',
        String(securedPort),
        '--requirepass',
        password,
        '--save',
        '',
        '--appendonly',
        'no',
        '--bind',
        '127.0.0.1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    await new Promise<void>((resolve, reject) => {
      let out = ''
      server.stdout!.on('data', (chunk: Buffer) => {
        out += chunk
        if (/Ready to accept connections/.test(out)) resolve()
      })
      server.once('error', reject)
      server.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${out}`)))
    })
  })

  after(async () => {
    if (server?.pid) process.kill(server.pid)
    await admin.quit()
  })

  test('nothing listening: connection refused, naming the address', async () => {
    const port = await freePort()
    const err = await startupError(`redis://:s3cret-pw@127.0.0.1:${port}`, ['s3cret-pw'])
    assert.equal(
      err.message,
      `session store redis://127.0.0.1:${port}/0: connection refused (is Redis running at 127.0.0.1:${port}?)`,
    )
  })

  test('a wrong password: authentication failed, the password shown nowhere', async () => {
    const wrong = `wrong-${randomBytes(6).toString('hex')}`
    const err = await startupError(`redis://:${wrong}@127.0.0.1:${securedPort}`, [wrong, password])
    assert.equal(
      err.message,
      `session store redis://127.0.0.1:${securedPort}/0: authentication failed (check the user and password in session.store)`,
    )
    const withUser = await startupError(`redis://default:${wrong}@127.0.0.1:${securedPort}/2`, [wrong, password])
    assert.match(withUser.message, /^session store redis:\/\/127\.0\.0\.1:\d+\/2: authentication failed/)
  })

  test('no password for a server that needs one: authentication required', async () => {
    const err = await startupError(`redis://127.0.0.1:${securedPort}`)
    assert.match(err.message, /: authentication required: the server needs a password and session\.store gives none/)
  })

  test('the right password opens the store', async () => {
    const store = await openStore(`redis://:${password}@127.0.0.1:${securedPort}?prefix=gh-startup-${run}:`)
    try {
      const record = sampleRecord({ expiresAt: Date.now() + HOUR })
      assert.equal(await store.set(record), true)
      assert.deepEqual(await store.get(record.idHash, Date.now()), record)
    } finally {
      await store.close()
    }
  })

  test("a database index beyond the server's: out of range, with how many it has (not a silent database 0)", async () => {
    const [, databases] = (await admin.config('GET', 'databases')) as [string, string]
    const err = await startupError(`${REDIS_URL}/99`)
    assert.equal(
      err.message,
      `session store ${REDIS_URL}/99: database index 99 is out of range (this server has ${databases} databases: 0 to ${Number(databases) - 1})`,
    )
  })

  test('/3 selects database 3: a key written through the store is in database 3, not 0', async () => {
    const prefix = `gh-startup-${run}-db3:`
    const store = await openStore(`${REDIS_URL}/3?prefix=${encodeURIComponent(prefix)}`)
    const db3 = new Redis(`${REDIS_URL}/3`, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    db3.on('error', () => {})
    try {
      await db3.connect()
      const record = sampleRecord({ expiresAt: Date.now() + HOUR })
      await store.set(record)
      const key = `${prefix}{s:${record.idHash}}`
      assert.equal(await db3.hget(key, 'sub'), record.sub, 'the record is in database 3')
      assert.equal(await admin.exists(key), 0, 'and not in database 0')
      await store.delete(record.idHash)
    } finally {
      await store.close()
      const keys = await db3.keys(`${prefix}*`)
      if (keys.length > 0) await db3.del(...keys)
      await db3.quit()
    }
  })

  test('a path that is not a database number is refused before connecting', async () => {
    const err = await startupError(`${REDIS_URL}/sessions`)
    assert.equal(
      err.message,
      `session store ${REDIS_URL}/sessions: the path must be a database number such as /0 or /3, not "sessions"`,
    )
    assert.match(
      (await startupError(`${REDIS_URL}/-1`)).message,
      /the path must be a database number such as \/0 or \/3, not "-1"/,
    )
    assert.match((await startupError(`${REDIS_URL}/1.5`)).message, /not "1\.5"/)
  })

  test('rediss:// to a plain port: the TLS handshake fails, and says so', async () => {
    const plain = new URL(REDIS_URL)
    const err = await startupError(`rediss://:${password}@${plain.host}`, [password])
    assert.match(err.message, /^session store rediss:\/\/[^/]+\/0: TLS handshake failed \(/)
  })
})

describe('PostgreSQL start-up errors', () => {
  const admin = new pg.Client({ connectionString: POSTGRES_URL })
  const base = new URL(POSTGRES_URL)
  before(() => admin.connect())
  after(() => admin.end())

  test('nothing listening: connection refused, naming the address, never the password', async () => {
    const port = await freePort()
    const err = await startupError(`postgres://gh:s3cret-pw@127.0.0.1:${port}/test?password=other-s3cret`, [
      's3cret-pw',
      'other-s3cret',
    ])
    assert.equal(
      err.message,
      `session store postgres://127.0.0.1:${port}/test: connection refused (is PostgreSQL running at 127.0.0.1:${port}?)`,
    )
  })

  test('a missing database is named', async () => {
    const name = `gh_missing_${run}`
    const err = await startupError(`postgres://postgres:pw-x1@${base.host}/${name}`, ['pw-x1'])
    assert.equal(err.message, `session store postgres://${base.host}/${name}: database "${name}" does not exist`)
  })

  test('a missing role is named', async () => {
    const role = `gh_nobody_${run}`
    const err = await startupError(`postgres://${role}:pw-x2@${base.host}/test`, ['pw-x2'])
    assert.equal(err.message, `session store postgres://${base.host}/test: role "${role}" does not exist`)
  })

  test('a role that may not create the missing schema: says the tables are missing and who may create them', async () => {
    const role = `gh_nocreate_${run}`
    await admin.query(`CREATE ROLE ${role} LOGIN`)
    try {
      const err = await startupError(`postgres://${role}@${base.host}/test?schema=gh_never_${run}`)
      assert.match(
        err.message,
        new RegExp(
          `: schema gh_never_${run} lacks the session tables and this user may not create them \\(permission denied for database test\\): run gatehouse migrate as a user that may`,
        ),
      )
    } finally {
      await admin.query(`DROP ROLE ${role}`)
    }
  })

  test('sslmode=require: one clear line whatever the server answers, and no ten-line warning from pg', async () => {
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(w.message)
    process.on('warning', onWarning)
    const { rows } = await admin.query<{ ssl: string }>('SHOW ssl')
    const url = `postgres://postgres:pw-x3@${base.host}/test?sslmode=require&schema=gh_ssl_${run}`
    try {
      if (rows[0]!.ssl === 'off') {
        const err = await startupError(url, ['pw-x3'])
        assert.equal(
          err.message,
          `session store postgres://${base.host}/test: TLS failed: the server does not support SSL connections (sslmode in session.store asks for TLS)`,
        )
      } else {
        // A server with SSL: its certificate is checked (pg's meaning of require), so either it opens or the handshake fails.
        const outcome = await openStore(url).then(
          async (store) => {
            await store.close()
            await admin.query(`DROP SCHEMA IF EXISTS gh_ssl_${run} CASCADE`)
            return 'opened'
          },
          (e: unknown) => e,
        )
        if (outcome !== 'opened')
          await startupError(url, ['pw-x3']).then((err) => assert.match(err.message, /TLS handshake failed \(/))
      }
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(
        warnings.filter((w) => /sslmode|SSL modes/i.test(w)),
        [],
      )
    } finally {
      process.off('warning', onWarning)
    }
  })
})

describe('SQLite start-up errors', () => {
  test('a folder that cannot be created because a file stands in its way', async () => {
    const file = join(dir, 'a-file')
    writeFileSync(file, 'not a folder')
    const err = await startupError(`sqlite:${join(file, 'sub', 'sessions.db')}`)
    assert.equal(
      err.message,
      `session store sqlite:${join(file, 'sub', 'sessions.db')}: folder ${join(file, 'sub')} cannot be created: ${file} is a file, not a folder`,
    )
    const direct = await startupError(`sqlite:${join(file, 'sessions.db')}`)
    assert.equal(direct.message, `session store sqlite:${join(file, 'sessions.db')}: ${file} is a file, not a folder`)
  })

  test('a missing folder is created (as documented)', async () => {
    const path = join(dir, 'new', 'deeper', 'sessions.db')
    const store = await openStore(`sqlite:${path}`)
    await store.close()
  })

  test('a folder where the file should be, and a file that is not a database', async () => {
    const folder = join(dir, 'folder.db')
    mkdirSync(folder)
    assert.equal(
      (await startupError(`sqlite:${folder}`)).message,
      `session store sqlite:${folder}: ${folder} is a folder, not a database file`,
    )
    const junk = join(dir, 'junk.db')
    writeFileSync(junk, 'this is not SQLite, and long enough to be read as a header: '.repeat(10))
    assert.equal(
      (await startupError(`sqlite:${junk}`)).message,
      `session store sqlite:${junk}: ${junk} is not a SQLite database`,
    )
  })

  test('a folder this user may not write to', async () => {
    // Root writes everywhere: as root, the child that opens the store becomes nobody (uid 65534) once
    // its modules are loaded (so the repository need not be readable by nobody).
    const asRoot = process.getuid?.() === 0
    const readOnly = join(dir, 'read-only')
    mkdirSync(readOnly)
    chmodSync(dir, 0o755)
    chmodSync(readOnly, 0o555)
    const path = join(readOnly, 'sessions.db')
    const script = `import { openStore } from ${JSON.stringify(new URL('../../src/session/stores/open-store.ts', import.meta.url).pathname)}
${asRoot ? 'process.setgid(65534); process.setuid(65534)' : ''}
openStore(${JSON.stringify(`sqlite:${path}`)}).then(() => console.log('opened'), (e) => console.log(e.message))`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: tmpdir(),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    await new Promise((resolve) => child.on('close', resolve))
    chmodSync(readOnly, 0o755)
    assert.equal(
      stdout.trim(),
      `session store sqlite:${path}: folder ${readOnly} is not writable (the database file cannot be created there)`,
      stderr,
    )
  })
})

/** The error opening `location` fails with when the location itself is wrong: config_invalid, one line, never the secret, no `input`. */
async function locationError(location: string, secret: string): Promise<GatehouseError> {
  const err = await openStore(location).then(
    async (store) => {
      await store.close()
      return assert.fail('opened')
    },
    (e: unknown) => e,
  )
  assert.ok(err instanceof GatehouseError, `a GatehouseError, got ${String(err)}`)
  assert.equal(err.code, 'config_invalid')
  assert.match(err.message, /^session\.store /)
  assert.doesNotMatch(err.message, /\n/)
  const everything = `${err.message} ${JSON.stringify(describeError(err))} ${JSON.stringify(err, Object.getOwnPropertyNames(err))} ${String(err.cause)}`
  assert.ok(!everything.includes(secret), `the error carries "${secret}": ${everything}`)
  assert.equal((err as { input?: unknown }).input, undefined)
  return err
}

describe('store locations a password broke, and Redis query parameters (issue #15 review F1, F6, F8)', () => {
  const secret = 'Zm9vSECRET'
  for (const location of [
    `redis://gatehouse:${secret}/YmFy+=@127.0.0.1:6379/0`,
    `postgres://gatehouse:${secret}/YmFy@127.0.0.1:5432/test`,
  ]) {
    test(`a URL that does not parse (${location.split(':')[0]}): names session.store, not "Invalid URL" with the URL attached`, async () => {
      const err = await locationError(location, secret)
      assert.match(
        err.message,
        /^session\.store is not a valid URL: percent-encode the user name and password \(encodeURIComponent\)$/,
      )
    })
  }

  for (const location of [
    `redis://gatehouse:6379/${secret}@127.0.0.1:6379/0`,
    `postgres://gatehouse:5432/${secret}@127.0.0.1:5432/test`,
  ]) {
    test(`a password that parses as port and path (${location.split(':')[0]}): refused before connecting to the wrong host, without it`, async () => {
      const err = await locationError(location, secret)
      assert.match(err.message, /^session\.store has "@" after the host: percent-encode/)
    })
  }

  test('publicLocation leaves out a path holding "@" (the tail of such a password)', () => {
    assert.equal(publicLocation(new URL(`redis://gatehouse:6379/${secret}@127.0.0.1:6379/0`)), 'redis://gatehouse:6379')
    assert.equal(
      publicLocation(new URL('postgres://u:pw@db.internal:5432/app?password=x')),
      'postgres://db.internal:5432/app',
    )
  })

  test('a "%" that starts no escape in a PostgreSQL password: refused naming session.store, not pg\'s "URI malformed"', async () => {
    const err = await locationError(`postgres://u:100%zz${secret}@127.0.0.1:5432/test`, secret)
    assert.match(err.message, /^session\.store has a "%" that starts no percent-escape/)
  })

  test('Redis ?db= and driver options are refused: ioredis would let them override the database and bounds gatehouse set', async () => {
    const db = await locationError(`${REDIS_URL}?db=5`, secret)
    assert.match(
      db.message,
      /^session\.store has the query parameter "db", which gatehouse does not read \(the database is the path/,
    )
    const timeout = await locationError(`${REDIS_URL}/0?connectTimeout=60000&prefix=x:`, secret)
    assert.match(timeout.message, /query parameter "connectTimeout"/)
  })

  test('a percent-encoded password with "/", "@" and "%" reaches Redis decoded', async () => {
    const password = `a/b@c%d+${randomBytes(4).toString('hex')}`
    const port = await freePort()
    const server = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', password],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    )
    try {
      await new Promise<void>((resolve, reject) => {
        let out = ''
        server.stdout!.on('data', (d: Buffer) => {
          out += d
          if (/Ready to accept connections/.test(out)) resolve()
        })
        server.on('exit', () => reject(new Error(`redis-server exited: ${out}`)))
      })
      const store = await openStore(`redis://:${encodeURIComponent(password)}@127.0.0.1:${port}/0`)
      await store.ping()
      await store.close()
    } finally {
      server.kill()
    }
  })
})

describe('SQLite locations SQLite reads itself (issue #15 review F10)', () => {
  test('sqlite:file:NAME?mode=memory opens in memory: no file, no folder named "file:…"', async () => {
    const cwd = process.cwd()
    const folder = join(dir, 'uri-memory')
    mkdirSync(folder)
    process.chdir(folder)
    try {
      const store = await openStore('sqlite:file:sessions.db?mode=memory')
      const record = sampleRecord({ expiresAt: Date.now() + HOUR })
      assert.equal(await store.set(record), true)
      assert.deepEqual(await store.get(record.idHash, Date.now()), record)
      await store.close()
      assert.deepEqual(readdirSync(folder), [])
    } finally {
      process.chdir(cwd)
    }
  })

  test('a file: URI naming a file opens that file', async () => {
    const path = join(dir, 'uri-file.db')
    const store = await openStore(`sqlite:file:${path}`)
    await store.close()
    assert.ok(existsSync(path))
  })
})
