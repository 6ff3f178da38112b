// The Kubernetes manifests in deploy/kubernetes/ (docs/deployment.md#kubernetes): they parse, and
// they agree with gatehouse itself — its config validation, the GATEHOUSE_*_FILE variables it
// accepts, its listen ports, its shutdown drain, and the Dockerfile's user and command.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, posix } from 'node:path'
import { describe, test } from 'node:test'
import { parseAllDocuments } from 'yaml'
import { applyEnvOverlay, envVariables, readEnvConfig } from '../../src/config/env-config.ts'
import { interpolateEnv } from '../../src/config/load.ts'
import type { ConfigIssue } from '../../src/config/types.ts'
import { validateConfig } from '../../src/config/validate.ts'
import { configWarnings } from '../../src/config/warnings.ts'
import { generateKey } from '../../src/session/seal.ts'

type Doc = Record<string, any>

const root = new URL('../../', import.meta.url).pathname
const dir = join(root, 'deploy/kubernetes')
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .sort()

const docsByFile = new Map<string, Doc[]>()
for (const file of files) {
  const parsed = parseAllDocuments(readFileSync(join(dir, file), 'utf8'))
  const list = Array.isArray(parsed) ? parsed : [parsed]
  docsByFile.set(
    file,
    list
      .map((d) => {
        if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`)
        return d.toJS() as Doc
      })
      .filter((d) => d !== null && d !== undefined),
  )
}
const docs = [...docsByFile.values()].flat()

function one(kind: string, name?: string): Doc {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata?.name === name))
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` named ${name}` : ''}`)
  return found[0]!
}

const deployment = one('Deployment')
const podSpec: Doc = deployment.spec.template.spec
const container: Doc = podSpec.containers.find((c: Doc) => c.name === 'gatehouse')
const configMap = one('ConfigMap')
const secret = one('Secret')
const rawConfig = JSON.parse(configMap.data['gatehouse.json']) as Doc
const listenPort: number = rawConfig.listen.port
const adminPort: number = rawConfig.admin.listen.port

/** A container port given by number or by name, as a number. */
function portNumber(port: number | string): number {
  if (typeof port === 'number') return port
  const named = (container.ports as Doc[]).find((p) => p.name === port)
  assert.ok(named, `container port named ${port}`)
  return named.containerPort
}

/** Names of the ${NAME} placeholders in the config. */
function placeholders(value: unknown): string[] {
  return [...JSON.stringify(value).matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]!)
}

const secretVolumes: Doc[] = (podSpec.volumes as Doc[]).filter((v) => v.secret)
/** The container's `*_FILE` variables. */
const fileVariables: Doc[] = (container.env as Doc[]).filter((e) => e.name.endsWith('_FILE'))

/**
 * The Secret key a path in the container reads: through the read-only volume mount it lies in, that
 * volume's Secret and its `items` (without items, each key is a file of its own name).
 */
function secretFileAt(path: string): { secretName: string; key: string; mount: Doc; volume: Doc } | undefined {
  for (const mount of container.volumeMounts as Doc[]) {
    const volume = secretVolumes.find((v) => v.name === mount.name)
    if (!volume || !path.startsWith(`${mount.mountPath}/`)) continue
    const rel = posix.relative(mount.mountPath, path)
    const items = volume.secret.items as Doc[] | undefined
    const key = items ? items.find((i) => i.path === rel)?.key : rel.includes('/') ? undefined : rel
    if (key !== undefined) return { secretName: volume.secret.secretName, key, mount, volume }
  }
  return undefined
}

/** Values of the right shape for each key of the Secret. */
function sampleSecret(): Record<string, string> {
  return {
    'oidc-client-secret': 'a-client-secret',
    keys: `${generateKey()}\n${generateKey()}\n`,
    'admin-token': 'an-admin-token-of-32-characters!',
    'session-store': 'redis://gatehouse:password@redis.example.svc.cluster.local:6379/0',
  }
}

/**
 * What `gatehouse serve` reads in the pod (src/config/read-config.ts): the ConfigMap's file, then the
 * container's GATEHOUSE_* variables over it, with each `*_FILE` read from the mounted Secret holding
 * `secretData`.
 */
function validateWith(secretData: Record<string, string>) {
  const env = Object.fromEntries((container.env as Doc[]).map((e) => [e.name, e.value as string]))
  const readFile = (path: string): string => {
    const file = secretFileAt(path)
    if (!file || !(file.key in secretData)) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' })
    return secretData[file.key]!
  }
  const issues: ConfigIssue[] = []
  const interpolated = interpolateEnv(rawConfig, env, '', issues)
  const overlay = readEnvConfig(env, readFile)
  return {
    interpolationIssues: [...issues, ...overlay.issues],
    ...validateConfig(applyEnvOverlay(interpolated, overlay)),
  }
}

const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')
/** The runtime stage's last instruction of a kind (the Dockerfile's last stage is the image). */
function dockerInstruction(name: string): string {
  const lines = dockerfile.split('\n').filter((l) => new RegExp(`^${name}\\s`, 'i').test(l))
  assert.ok(lines.length > 0, `Dockerfile has ${name}`)
  return lines
    .at(-1)!
    .replace(new RegExp(`^${name}\\s+`, 'i'), '')
    .trim()
}

/**
 * gatehouse's drain on SIGTERM: the default `graceMs` of closeServer in src/cli/serve.ts. It is a
 * default parameter, not an exported constant, so it is read from the source text.
 */
function drainSeconds(): number {
  const source = readFileSync(join(root, 'src/cli/serve.ts'), 'utf8')
  const match = /export async function closeServer\([^)]*graceMs = ([\d_]+)/.exec(source)
  assert.ok(match, 'closeServer(…, graceMs = N) found in src/cli/serve.ts')
  return Number(match[1]!.replaceAll('_', '')) / 1000
}

function preStopSleepSeconds(): number {
  const preStop: Doc = container.lifecycle?.preStop
  assert.ok(preStop, 'the container has a preStop hook')
  if (preStop.sleep) return Number(preStop.sleep.seconds)
  const command: string[] = preStop.exec.command
  assert.equal(command[0], 'sleep')
  return Number(command[1])
}

describe('Kubernetes manifests (deploy/kubernetes)', () => {
  test('every manifest file parses as YAML and names its apiVersion and kind', () => {
    assert.ok(files.length >= 6, `manifest files: ${files.join(', ')}`)
    for (const [file, list] of docsByFile) {
      assert.ok(list.length > 0, `${file} has a document`)
      for (const d of list) {
        assert.equal(typeof d.apiVersion, 'string', `${file}: apiVersion`)
        assert.equal(typeof d.kind, 'string', `${file}: kind`)
      }
    }
  })

  test('the set has a Deployment, Services, a PodDisruptionBudget, an autoscaling/v2 HPA, a ConfigMap and an example Secret', () => {
    const kinds = new Set(docs.map((d) => d.kind))
    for (const kind of [
      'Deployment',
      'Service',
      'PodDisruptionBudget',
      'HorizontalPodAutoscaler',
      'ConfigMap',
      'Secret',
      'Kustomization',
    ]) {
      assert.ok(kinds.has(kind), `${kind} present`)
    }
    assert.equal(one('HorizontalPodAutoscaler').apiVersion, 'autoscaling/v2')
    assert.equal(one('PodDisruptionBudget').apiVersion, 'policy/v1')
  })

  test('kubectl apply -k applies every manifest except the placeholder Secret', () => {
    const resources: string[] = one('Kustomization').resources
    for (const r of resources) assert.ok(files.includes(r), `${r} exists`)
    const secretFile = [...docsByFile].find(([, list]) => list.some((d) => d.kind === 'Secret'))![0]
    assert.ok(!resources.includes(secretFile), 'the example Secret is not applied over real secrets')
    const expected = files.filter(
      (f) => f !== secretFile && !docsByFile.get(f)!.some((d) => d.kind === 'Kustomization'),
    )
    assert.deepEqual([...resources].sort(), expected)
  })

  test('the liveness probe calls /healthz and the readiness probe /readyz on the config’s listen port', () => {
    assert.equal(container.livenessProbe.httpGet.path, '/healthz')
    assert.equal(container.readinessProbe.httpGet.path, '/readyz')
    assert.equal(portNumber(container.livenessProbe.httpGet.port), listenPort)
    assert.equal(portNumber(container.readinessProbe.httpGet.port), listenPort)
    if (container.startupProbe) {
      assert.equal(
        container.startupProbe.httpGet.path,
        '/healthz',
        'a startup probe must not depend on Redis or the IdP',
      )
      assert.equal(portNumber(container.startupProbe.httpGet.port), listenPort)
    }
    assert.equal(
      rawConfig.listen.host,
      '0.0.0.0',
      'listening on all interfaces, or probes and the Service cannot reach it',
    )
  })

  test('the public Service sends port 80 to the config’s listen port on the gatehouse pods', () => {
    const service = one('Service', 'gatehouse')
    assert.equal(service.spec.ports.length, 1)
    assert.equal(service.spec.ports[0].port, 80)
    assert.equal(portNumber(service.spec.ports[0].targetPort), listenPort)
    const labels = deployment.spec.template.metadata.labels
    for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(labels[k], v, `selector ${k}`)
  })

  test('the admin listener is reachable in the cluster on its own Service and not through the public one', () => {
    const services = docs.filter((d) => d.kind === 'Service')
    const admin = services.filter((s) => s.spec.ports.some((p: Doc) => portNumber(p.targetPort) === adminPort))
    assert.equal(admin.length, 1, 'one Service for the admin port')
    assert.notEqual(admin[0]!.metadata.name, 'gatehouse')
    assert.equal(admin[0]!.spec.type ?? 'ClusterIP', 'ClusterIP')
    assert.ok((container.ports as Doc[]).some((p) => p.containerPort === adminPort))
    assert.equal(
      typeof validateWith(sampleSecret()).config?.admin?.token,
      'string',
      'the admin listener has a token (from the Secret)',
    )
  })

  test('terminationGracePeriodSeconds outlasts the preStop sleep plus gatehouse’s SIGTERM drain', () => {
    const drain = drainSeconds()
    assert.ok(drain > 0, `gatehouse drains for ${drain} s (docs/deployment.md#graceful-shutdown)`)
    const sleep = preStopSleepSeconds()
    assert.ok(sleep > 0, 'the preStop hook sleeps so that the Service stops routing first')
    assert.ok(
      podSpec.terminationGracePeriodSeconds > drain + sleep,
      `${podSpec.terminationGracePeriodSeconds} > ${drain} + ${sleep}`,
    )
  })

  test('the container runs as the Dockerfile’s numeric non-root user', () => {
    const [uid, gid] = dockerInstruction('USER').split(':').map(Number)
    assert.ok(Number.isInteger(uid) && uid! > 0, 'the Dockerfile USER is numeric and not root')
    for (const ctx of [podSpec.securityContext, container.securityContext]) {
      assert.equal(ctx.runAsNonRoot, true)
      assert.equal(ctx.runAsUser, uid)
      if (gid !== undefined) assert.equal(ctx.runAsGroup, gid)
    }
  })

  test('the container is locked down: read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp', () => {
    const ctx = container.securityContext
    assert.equal(ctx.readOnlyRootFilesystem, true)
    assert.equal(ctx.allowPrivilegeEscalation, false)
    assert.deepEqual(ctx.capabilities.drop, ['ALL'])
    assert.equal(ctx.capabilities.add, undefined)
    assert.equal((ctx.seccompProfile ?? podSpec.securityContext.seccompProfile).type, 'RuntimeDefault')
    const tmp = (container.volumeMounts as Doc[]).find((m) => m.mountPath === '/tmp')
    assert.ok(tmp, '/tmp is mounted')
    assert.ok((podSpec.volumes as Doc[]).find((v) => v.name === tmp.name)?.emptyDir, '/tmp is an emptyDir')
  })

  test('the container has CPU and memory requests and limits', () => {
    for (const kind of ['requests', 'limits']) {
      assert.ok(container.resources[kind].cpu, `${kind}.cpu`)
      assert.ok(container.resources[kind].memory, `${kind}.memory`)
    }
  })

  test('the container runs `serve --config` on the ConfigMap’s gatehouse.json, mounted read-only', () => {
    const args: string[] = container.args
    assert.deepEqual(args.slice(0, 2), ['serve', '--config'])
    assert.deepEqual(args, JSON.parse(dockerInstruction('CMD')), 'the same command as the image’s default')
    assert.equal(container.command, undefined, 'the image’s ENTRYPOINT (gatehouse) is kept')
    const configPath = args[2]!
    const mount = (container.volumeMounts as Doc[]).find((m) => m.mountPath === dirname(configPath))
    assert.ok(mount, `a volume is mounted at ${dirname(configPath)}`)
    assert.equal(mount.readOnly, true)
    const volume = (podSpec.volumes as Doc[]).find((v) => v.name === mount.name)!
    assert.equal(volume.configMap.name, configMap.metadata.name)
    const item = (volume.configMap.items as Doc[] | undefined)?.find((i) => i.key === 'gatehouse.json')
    assert.equal(item ? item.path : 'gatehouse.json', configPath.slice(dirname(configPath).length + 1))
  })

  test('the ConfigMap’s gatehouse.json passes gatehouse’s config validation with the Secret’s files read', () => {
    const sample = sampleSecret()
    const { interpolationIssues, config, issues } = validateWith(sample)
    assert.deepEqual(interpolationIssues, [])
    assert.deepEqual(issues, [])
    assert.ok(config)
    assert.equal(config.listen.port, listenPort)
    assert.equal(config.oidc.clientSecret, sample['oidc-client-secret'])
    assert.equal(config.admin?.token, sample['admin-token'])
    assert.deepEqual(config.keys, sample.keys!.trim().split('\n'), 'a keys file holds the ring, one key per line')
    // `check-config --strict` warns about nothing but what a pod needs: both listeners bind 0.0.0.0
    // so that the Services (and the scraper) reach them; the network policy is the cluster's.
    const inherentToAPod = new Set(['listen_public', 'admin_listen_public'])
    assert.deepEqual(
      configWarnings(config)
        .filter((w) => w.level === 'warn' && !inherentToAPod.has(w.event))
        .map((w) => w.message),
      [],
    )
  })

  test('the session store is a shared Redis from the Secret, not SQLite or memory, since replicas share sessions', () => {
    assert.equal(rawConfig.session.mode ?? 'server', 'server')
    assert.equal(rawConfig.session.store, undefined, 'not in the ConfigMap: the URL holds the password')
    const { config } = validateWith(sampleSecret())
    assert.match(config!.session.store, /^rediss?:\/\//)
    const store = fileVariables.find((e) => e.name === 'GATEHOUSE_SESSION__STORE_FILE')
    assert.ok(store, 'GATEHOUSE_SESSION__STORE_FILE is set')
    assert.match(secret.stringData[secretFileAt(store.value)!.key], /^rediss?:\/\//)
  })

  test('every *_FILE variable is one gatehouse accepts and names a file of a mounted volume of the Secret that has that key', () => {
    const accepted = new Set(envVariables().map((v) => `${v.name}_FILE`))
    assert.ok(fileVariables.length > 0)
    for (const variable of fileVariables) {
      assert.ok(accepted.has(variable.name), `${variable.name} is a variable of src/config/env-config.ts`)
      assert.equal(typeof variable.value, 'string', `${variable.name} is a path`)
      const file = secretFileAt(variable.value)
      assert.ok(file, `${variable.name}=${variable.value} lies in a volume mount of a Secret`)
      assert.equal(file.secretName, secret.metadata.name)
      assert.ok(file.key in secret.stringData, `the example Secret has ${file.key}`)
      assert.equal(file.mount.readOnly, true, `${file.mount.mountPath} is mounted read-only`)
    }
  })

  test('every secret of the config comes from a Secret file: none in the ConfigMap or in the environment', () => {
    assert.deepEqual(placeholders(rawConfig), [], 'no ${…} left in the ConfigMap')
    const fromFiles = new Set(
      fileVariables.map((e) =>
        envVariables()
          .find((v) => `${v.name}_FILE` === e.name)!
          .path.join('.'),
      ),
    )
    for (const path of ['oidc.clientSecret', 'keys', 'admin.token', 'session.store']) {
      assert.ok(fromFiles.has(path), `${path} is read from a file`)
      const value = path.split('.').reduce<unknown>((node, key) => (node as Doc | undefined)?.[key], rawConfig)
      assert.equal(value, undefined, `${path} is not in the ConfigMap`)
    }
    for (const env of container.env as Doc[]) {
      assert.equal(env.valueFrom, undefined, `${env.name}: no Secret value in the environment`)
      assert.ok(
        env.name.endsWith('_FILE') || !Object.values(secret.stringData).includes(env.value),
        `${env.name} holds no secret`,
      )
    }
  })

  test('the Secret’s files are readable by the container’s user and no one else', () => {
    const gid: number = container.securityContext.runAsGroup ?? podSpec.securityContext.runAsGroup
    for (const volume of secretVolumes) {
      const mode: number = volume.secret.defaultMode ?? 0o644
      for (const item of (volume.secret.items as Doc[] | undefined) ?? [])
        assert.equal(item.mode, undefined, `${item.key} keeps defaultMode`)
      // Secret files are owned by root and by the pod's fsGroup.
      assert.equal(podSpec.securityContext.fsGroup, gid, 'fsGroup is the container’s group')
      assert.notEqual(mode & 0o040, 0, `mode 0${mode.toString(8)} lets the group read`)
      assert.equal(mode & 0o007, 0, `mode 0${mode.toString(8)} gives others nothing`)
      assert.equal(mode & 0o222, 0, `mode 0${mode.toString(8)} gives no one write access`)
    }
  })

  test('no Service-link variables: gatehouse would refuse GATEHOUSE_SERVICE_HOST and GATEHOUSE_PORT', () => {
    assert.equal(podSpec.enableServiceLinks, false)
    // What Kubernetes would set for the Service named "gatehouse" with enableServiceLinks on.
    const links = {
      GATEHOUSE_SERVICE_HOST: '10.0.0.1',
      GATEHOUSE_SERVICE_PORT: '80',
      GATEHOUSE_PORT: 'tcp://10.0.0.1:80',
    }
    const { issues } = readEnvConfig(links, () => '')
    assert.deepEqual(
      issues.map((i) => i.path).sort(),
      Object.keys(links)
        .map((n) => `(environment) ${n}`)
        .sort(),
    )
  })

  test('the example Secret holds only placeholders, and gatehouse refuses to start with them', () => {
    for (const [key, value] of Object.entries(secret.stringData as Record<string, string>)) {
      assert.match(value, /PLACEHOLDER/, `${key} is clearly a placeholder`)
    }
    const { config, issues } = validateWith(secret.stringData)
    assert.equal(config, undefined)
    assert.ok(
      issues.some((i) => i.path === 'keys[0]'),
      'the placeholder key is not a valid key',
    )
  })

  test('the PodDisruptionBudget keeps one pod and the autoscaler scales the Deployment on CPU', () => {
    const pdb = one('PodDisruptionBudget')
    assert.equal(pdb.spec.minAvailable, 1)
    const labels = deployment.spec.template.metadata.labels
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) assert.equal(labels[k], v)
    const hpa = one('HorizontalPodAutoscaler')
    assert.deepEqual(hpa.spec.scaleTargetRef, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
    })
    assert.ok(hpa.spec.minReplicas >= 2, 'at least two replicas, so the PDB lets a node drain')
    assert.ok(hpa.spec.metrics.some((m: Doc) => m.type === 'Resource' && m.resource.name === 'cpu'))
  })
})
