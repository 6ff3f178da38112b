// The Kubernetes manifests in deploy/kubernetes/ (docs/deployment.md#kubernetes): they parse, and
// they agree with gatehouse itself — its config validation, its listen ports, its shutdown drain,
// and the Dockerfile's user and command.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, test } from 'node:test'
import { parseAllDocuments } from 'yaml'
import { interpolateEnv } from '../../src/config/load.ts'
import type { ConfigIssue } from '../../src/config/types.ts'
import { validateConfig } from '../../src/config/validate.ts'
import { generateKey } from '../../src/session/seal.ts'

type Doc = Record<string, any>

const root = new URL('../../', import.meta.url).pathname
const dir = join(root, 'deploy/kubernetes')
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()

const docsByFile = new Map<string, Doc[]>()
for (const file of files) {
  const parsed = parseAllDocuments(readFileSync(join(dir, file), 'utf8'))
  const list = Array.isArray(parsed) ? parsed : [parsed]
  docsByFile.set(
    file,
    list.map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`)
      return d.toJS() as Doc
    }).filter((d) => d !== null && d !== undefined),
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

/** Placeholder values of the right shape for each secret. */
function sampleEnv(): Record<string, string> {
  return {
    OIDC_CLIENT_SECRET: 'a-client-secret',
    GATEHOUSE_KEY: generateKey(),
    GATEHOUSE_ADMIN_TOKEN: 'an-admin-token-of-32-characters!',
    GATEHOUSE_REDIS_URL: 'redis://gatehouse:password@redis.example.svc.cluster.local:6379/0',
  }
}

function validateWith(env: Record<string, string>) {
  const issues: ConfigIssue[] = []
  const interpolated = interpolateEnv(rawConfig, env, '', issues)
  return { interpolationIssues: issues, ...validateConfig(interpolated) }
}

const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')
/** The runtime stage's last instruction of a kind (the Dockerfile's last stage is the image). */
function dockerInstruction(name: string): string {
  const lines = dockerfile.split('\n').filter((l) => new RegExp(`^${name}\\s`, 'i').test(l))
  assert.ok(lines.length > 0, `Dockerfile has ${name}`)
  return lines.at(-1)!.replace(new RegExp(`^${name}\\s+`, 'i'), '').trim()
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
    for (const kind of ['Deployment', 'Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'ConfigMap', 'Secret', 'Kustomization']) {
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
    const expected = files.filter((f) => f !== secretFile && !docsByFile.get(f)!.some((d) => d.kind === 'Kustomization'))
    assert.deepEqual([...resources].sort(), expected)
  })

  test('the liveness probe calls /healthz and the readiness probe /readyz on the config’s listen port', () => {
    assert.equal(container.livenessProbe.httpGet.path, '/healthz')
    assert.equal(container.readinessProbe.httpGet.path, '/readyz')
    assert.equal(portNumber(container.livenessProbe.httpGet.port), listenPort)
    assert.equal(portNumber(container.readinessProbe.httpGet.port), listenPort)
    if (container.startupProbe) {
      assert.equal(container.startupProbe.httpGet.path, '/healthz', 'a startup probe must not depend on Redis or the IdP')
      assert.equal(portNumber(container.startupProbe.httpGet.port), listenPort)
    }
    assert.equal(rawConfig.listen.host, '0.0.0.0', 'listening on all interfaces, or probes and the Service cannot reach it')
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
    assert.equal(typeof rawConfig.admin.token, 'string', 'the admin listener has a token')
  })

  test('terminationGracePeriodSeconds outlasts the preStop sleep plus gatehouse’s SIGTERM drain', () => {
    const drain = drainSeconds()
    assert.ok(drain > 0, `gatehouse drains for ${drain} s (docs/deployment.md#graceful-shutdown)`)
    const sleep = preStopSleepSeconds()
    assert.ok(sleep > 0, 'the preStop hook sleeps so that the Service stops routing first')
    assert.ok(podSpec.terminationGracePeriodSeconds > drain + sleep, `${podSpec.terminationGracePeriodSeconds} > ${drain} + ${sleep}`)
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
    assert.equal(container.command, undefined, 'the image’s ENTRYPOINT (node dist/cli/main.js) is kept')
    const configPath = args[2]!
    const mount = (container.volumeMounts as Doc[]).find((m) => m.mountPath === dirname(configPath))
    assert.ok(mount, `a volume is mounted at ${dirname(configPath)}`)
    assert.equal(mount.readOnly, true)
    const volume = (podSpec.volumes as Doc[]).find((v) => v.name === mount.name)!
    assert.equal(volume.configMap.name, configMap.metadata.name)
    const item = (volume.configMap.items as Doc[] | undefined)?.find((i) => i.key === 'gatehouse.json')
    assert.equal(item ? item.path : 'gatehouse.json', configPath.slice(dirname(configPath).length + 1))
  })

  test('the ConfigMap’s gatehouse.json passes gatehouse’s config validation once its ${…} variables are set', () => {
    const { interpolationIssues, config, issues } = validateWith(sampleEnv())
    assert.deepEqual(interpolationIssues, [])
    assert.deepEqual(issues, [])
    assert.ok(config)
    assert.equal(config.listen.port, listenPort)
  })

  test('the session store is a shared Redis from the Secret, not SQLite or memory, since replicas share sessions', () => {
    assert.equal(rawConfig.session.mode ?? 'server', 'server')
    assert.match(rawConfig.session.store, /^\$\{[A-Z_]+\}$/)
    const { config } = validateWith(sampleEnv())
    assert.match(config!.session.store, /^rediss?:\/\//)
    assert.match(secret.stringData[placeholders(rawConfig.session.store)[0]!], /^rediss?:\/\//)
  })

  test('every ${…} variable in the config is an environment variable taken from the Secret', () => {
    const names = placeholders(rawConfig)
    assert.deepEqual([...names].sort(), Object.keys(sampleEnv()).sort())
    for (const name of names) {
      const env = (container.env as Doc[]).find((e) => e.name === name)
      assert.ok(env, `${name} is set`)
      assert.equal(env.value, undefined, `${name} is not written into the manifest`)
      assert.equal(env.valueFrom.secretKeyRef.name, secret.metadata.name)
      assert.ok(env.valueFrom.secretKeyRef.key in secret.stringData, `the example Secret has ${env.valueFrom.secretKeyRef.key}`)
    }
    const secretValues = { 'oidc.clientSecret': rawConfig.oidc.clientSecret, 'admin.token': rawConfig.admin.token, 'session.store': rawConfig.session.store, ...Object.fromEntries((rawConfig.keys as string[]).map((k, i) => [`keys[${i}]`, k])) }
    for (const [path, value] of Object.entries(secretValues)) assert.match(value, /^\$\{[A-Z_]+\}$/, `${path} is only a \${…} reference, no literal secret in the ConfigMap`)
  })

  test('the example Secret holds only placeholders, and gatehouse refuses to start with them', () => {
    for (const [key, value] of Object.entries(secret.stringData as Record<string, string>)) {
      assert.match(value, /PLACEHOLDER/, `${key} is clearly a placeholder`)
    }
    const { config, issues } = validateWith(secret.stringData)
    assert.equal(config, undefined)
    assert.ok(issues.some((i) => i.path === 'keys[0]'), 'the placeholder key is not a valid key')
  })

  test('the PodDisruptionBudget keeps one pod and the autoscaler scales the Deployment on CPU', () => {
    const pdb = one('PodDisruptionBudget')
    assert.equal(pdb.spec.minAvailable, 1)
    const labels = deployment.spec.template.metadata.labels
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) assert.equal(labels[k], v)
    const hpa = one('HorizontalPodAutoscaler')
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name })
    assert.ok(hpa.spec.minReplicas >= 2, 'at least two replicas, so the PDB lets a node drain')
    assert.ok(hpa.spec.metrics.some((m: Doc) => m.type === 'Resource' && m.resource.name === 'cpu'))
  })
})
