// Validates rendered Kubernetes manifests (multi-document YAML, one file per `kubectl kustomize`
// output) in two passes:
//
//   schema  every object against the OpenAPI schema of its kind (npm kubernetes-models,
//           @kubernetes-models/prometheus-operator, @kubernetes-models/gateway-api for HTTPRoute;
//           InferencePool against the GIE release's CRD schema in tests/deploy/schemas/, with
//           ajv): wrong types, missing required fields, bad enum values. Unknown fields are not
//           caught by the kubernetes-models packages; the policy pass catches the ones that
//           matter by requiring them.
//   policy  what kvserve needs from its Deployment, checked within each file: memory request =
//           limit, the KV-cache budget equal to limit - weights - headroom, a grace period longer
//           than preStop + drain, gRPC probes on the serving port (readiness per service), the
//           restricted security context, every $(VAR) defined, every --flag known to the binary,
//           and Services, PodDisruptionBudget, ServiceMonitor and HorizontalPodAutoscaler pointing
//           at the Deployment's pods. The inference gateway variant (overlays/gie): the
//           InferencePool selects the kvserve pods and targets their HTTP API port, its endpoint
//           picker Service reaches the EPP pods, the EPP scrapes kvserve's metrics port and reads
//           series kvserve exports (docs/metrics.md), its prefix blocks are kvserve's cache
//           blocks, and every HTTPRoute backend pool is in the render. Across files: an
//           autoscaler's Pods metric must be served by a prometheus-adapter rule, when an adapter
//           config is among the inputs.
//
//   node validate_manifests.mjs --modules DIR [--kvserve-help FILE] [--metrics-doc FILE]
//                               [--schema-only] MANIFEST.yaml...
//
// DIR holds node_modules with the packages in tests/deploy/package.json; FILE is the output of
// `kvserve --help`; --metrics-doc is docs/metrics.md (the series kvserve exports); --schema-only
// skips the policy pass (for files that are not a whole render).
// Prints one line per problem and exits 1 if there was any.
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import {fileURLToPath} from 'node:url';

const kReadinessService = 'kvserve.v1.KvServe';
const kKvserveContainer = 'kvserve';  // the container the kvserve policy applies to
const kDefaultBlockSize = 16;         // kvserve's --block-size default
const kGrpcPortName = 'grpc';
const kDrainMarginSeconds = 5;  // beyond preStop + --shutdown-timeout (1 s of it is kvserve's own)
const kDefaultShutdownTimeout = 30;  // kvserve's default

function parseArgs(argv) {
  const options = {modules: null, help: null, metricsDoc: null, schemaOnly: false, files: []};
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--modules') options.modules = argv[++i];
    else if (argv[i] === '--kvserve-help') options.help = argv[++i];
    else if (argv[i] === '--metrics-doc') options.metricsDoc = argv[++i];
    else if (argv[i] === '--schema-only') options.schemaOnly = true;
    else options.files.push(argv[i]);
  }
  if (!options.modules || options.files.length === 0) {
    console.error('usage: validate_manifests.mjs --modules DIR [--kvserve-help FILE] ' +
                  '[--metrics-doc FILE] [--schema-only] FILE...');
    process.exit(2);
  }
  return options;
}

const options = parseArgs(process.argv.slice(2));
const require = createRequire(path.join(path.resolve(options.modules), 'package.json'));
const yaml = require('js-yaml');

const problems = [];
function report(file, doc, message) {
  const name = doc ? `${doc.kind}/${doc.metadata?.name ?? '?'}` : '-';
  problems.push(`${file}: ${name}: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// Schema pass.

// CRD schemas kept as test fixtures (no npm package ships them), by "apiVersion kind".
const kSchemaDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'schemas');
const kFixtureSchemas = {
  'inference.networking.k8s.io/v1 InferencePool': 'inference.networking.k8s.io_v1_inferencepool.yaml',
};
let ajv = null;
const fixtureValidators = new Map();

// A validator with the kubernetes-models `validate()` shape, from a CRD's openAPIV3Schema.
function fixtureModel(file) {
  if (!fixtureValidators.has(file)) {
    if (!ajv) {
      const Ajv = require('ajv');
      // strict: false lets the CRD's own keywords (x-kubernetes-*) through unread.
      ajv = new Ajv({allErrors: true, strict: false});
      ajv.addFormat('int32', {type: 'number', validate: (x) => Number.isInteger(x) && x >= -(2 ** 31) && x < 2 ** 31});
    }
    const crd = yaml.load(fs.readFileSync(path.join(kSchemaDir, file), 'utf8'));
    fixtureValidators.set(file, ajv.compile(crd.spec.versions[0].schema.openAPIV3Schema));
  }
  const check = fixtureValidators.get(file);
  return class {
    constructor(doc) { this.doc = doc; }
    validate() {
      if (!check(this.doc)) {
        throw new Error(check.errors.map((e) => `${e.instancePath || '/'} ${e.message}`).join('; '));
      }
    }
  };
}

function modelFor(apiVersion, kind) {
  const fixture = kFixtureSchemas[`${apiVersion} ${kind}`];
  if (fixture) return fixtureModel(fixture);
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const thirdParty = {
    'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
    'gateway.networking.k8s.io': '@kubernetes-models/gateway-api',
  }[group];
  const modulePath = thirdParty
      ? `${thirdParty}/${group}/${version}`
      : `kubernetes-models/${group ? group + '/' : ''}${version}`;
  try {
    return require(modulePath)[kind] ?? null;
  } catch {
    return null;
  }
}

function checkSchema(file, doc) {
  if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') {
    report(file, doc, 'apiVersion and kind must be strings');
    return;
  }
  const Model = modelFor(doc.apiVersion, doc.kind);
  if (!Model) {
    report(file, doc, `no schema for ${doc.apiVersion} ${doc.kind}`);
    return;
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    report(file, doc, `schema: ${e.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Policy pass.

// A Kubernetes quantity in bytes (memory) or cores (cpu), e.g. "2Gi", "512M", "500m", "2".
function parseQuantity(q) {
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(String(q));
  if (!m) return NaN;
  const units = {
    '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12,
    Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40,
  };
  return m[2] in units ? Number(m[1]) * units[m[2]] : NaN;
}

function selectorMatches(selector, labels) {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

// Flags accepted by kvserve, from its --help text ("--name=<type>" or "--[no]name").
function knownFlags(helpFile) {
  const flags = new Set();
  for (const m of fs.readFileSync(helpFile, 'utf8').matchAll(/--(\[no\])?([a-z][a-z0-9-]*)/g)) {
    flags.add(m[2]);
    if (m[1]) flags.add(`no${m[2]}`);
  }
  return flags;
}

// The restricted security context every container must run with.
function checkSecurity(file, deployment, c) {
  const where = `container ${c.name}`;
  const pod = deployment.spec?.template?.spec ?? {};
  const sc = c.securityContext ?? {};
  const psc = pod.securityContext ?? {};
  if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) report(file, deployment, `${where}: runAsNonRoot must be true`);
  if (!((sc.runAsUser ?? psc.runAsUser) > 0)) report(file, deployment, `${where}: runAsUser must be a non-zero uid`);
  if (sc.readOnlyRootFilesystem !== true) report(file, deployment, `${where}: readOnlyRootFilesystem must be true`);
  if (sc.allowPrivilegeEscalation !== false) report(file, deployment, `${where}: allowPrivilegeEscalation must be false`);
  if (!(sc.capabilities?.drop ?? []).includes('ALL')) report(file, deployment, `${where}: capabilities must drop ALL`);
  if ((sc.seccompProfile ?? psc.seccompProfile)?.type !== 'RuntimeDefault') {
    report(file, deployment, `${where}: seccompProfile must be RuntimeDefault`);
  }
}

const byKindName = (docs, kind, name) => docs.find((d) => d.kind === kind && d.metadata?.name === name);
const podLabelsOf = (deployment) => deployment.spec?.template?.metadata?.labels ?? {};
const portOf = (address) => (address === undefined ? undefined : Number(String(address).split(':').pop()));

// The container's `--name=value` arguments, $(VAR) expanded as the kubelet does from env and the
// referenced ConfigMaps; with `helpFlags`, each name must be a flag of that binary.
function containerFlags(file, deployment, c, docs, helpFlags) {
  const where = `container ${c.name}`;
  const env = {};
  for (const ref of c.envFrom ?? []) {
    if (!ref.configMapRef) continue;
    const cm = byKindName(docs, 'ConfigMap', ref.configMapRef.name);
    if (!cm) report(file, deployment, `${where}: envFrom ConfigMap ${ref.configMapRef.name} is not in this render`);
    Object.assign(env, cm?.data ?? {});
  }
  for (const e of c.env ?? []) env[e.name] = e.value ?? (e.valueFrom ? `<${e.name}>` : undefined);
  const flags = {};
  for (const arg of c.args ?? []) {
    const expanded = String(arg).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name) => {
      if (!(name in env)) report(file, deployment, `${where}: ${arg}: $(${name}) is not defined`);
      return env[name] ?? whole;
    });
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(expanded);
    if (!m) {
      report(file, deployment, `${where}: argument ${arg} is not a --flag`);
      continue;
    }
    if (helpFlags && !helpFlags.has(m[1])) {
      report(file, deployment, `${where}: kvserve has no flag --${m[1]} (kvserve --help)`);
    }
    flags[m[1]] = m[2] ?? 'true';
  }
  return {flags, env};
}

// kvserve's own policy for the kvserve container of `deployment`; returns its flags (null when
// the Deployment runs no kvserve container).
function checkDeployment(file, deployment, docs, helpFlags) {
  const pod = deployment.spec?.template?.spec ?? {};
  const podLabels = podLabelsOf(deployment);
  if (!selectorMatches(deployment.spec?.selector?.matchLabels, podLabels)) {
    report(file, deployment, 'spec.selector does not match the pod template labels');
  }
  let kvserveFlags = null;
  for (const c of pod.containers ?? []) {
    checkSecurity(file, deployment, c);
    if (c.name !== kKvserveContainer) continue;
    const where = `container ${c.name}`;
    const {flags, env} = containerFlags(file, deployment, c, docs, helpFlags);
    kvserveFlags = flags;

    // Resources: memory request = limit, CPU request = matmul threads.
    const requests = c.resources?.requests ?? {};
    const limits = c.resources?.limits ?? {};
    const memoryLimit = parseQuantity(limits.memory);
    if (requests.memory === undefined || limits.memory === undefined ||
        parseQuantity(requests.memory) !== memoryLimit) {
      report(file, deployment, `${where}: memory request (${requests.memory}) must equal the memory limit (${limits.memory})`);
    }
    if (flags.threads !== undefined && parseQuantity(requests.cpu) !== Number(flags.threads)) {
      report(file, deployment, `${where}: --threads=${flags.threads} differs from the CPU request (${requests.cpu})`);
    }

    // KV-cache budget = limit - weights - headroom.
    if (flags['kv-cache-bytes'] !== undefined) {
      const kv = Number(flags['kv-cache-bytes']);
      const weights = Number(env.KVSERVE_WEIGHTS_BYTES);
      const headroom = Number(env.KVSERVE_HEADROOM_BYTES);
      if (!Number.isFinite(weights) || !Number.isFinite(headroom)) {
        report(file, deployment, `${where}: --kv-cache-bytes needs KVSERVE_WEIGHTS_BYTES and KVSERVE_HEADROOM_BYTES to check it against`);
      } else if (!(kv > 0) || kv !== memoryLimit - weights - headroom) {
        report(file, deployment, `${where}: --kv-cache-bytes=${flags['kv-cache-bytes']} is not memory limit ${memoryLimit} - weights ${weights} - headroom ${headroom} = ${memoryLimit - weights - headroom}`);
      }
    }

    // Drain: the kubelet must not SIGKILL before preStop + --shutdown-timeout have passed.
    const preStop = c.lifecycle?.preStop;
    let preStopSeconds = 0;
    if (preStop?.sleep) preStopSeconds = Number(preStop.sleep.seconds);
    else if (preStop?.exec?.command && /(^|\/)sleep$/.test(preStop.exec.command[0])) {
      preStopSeconds = Number(preStop.exec.command[1]);
    }
    const shutdown = Number(flags['shutdown-timeout'] ?? kDefaultShutdownTimeout);
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    if (!(grace >= preStopSeconds + shutdown + kDrainMarginSeconds)) {
      report(file, deployment, `${where}: terminationGracePeriodSeconds ${grace} < preStop ${preStopSeconds} + --shutdown-timeout ${shutdown} + ${kDrainMarginSeconds}`);
    }

    // Probes: native gRPC on the serving port; readiness asks for the service by name.
    const grpcPort = (c.ports ?? []).find((p) => p.name === kGrpcPortName)?.containerPort;
    const listenPort = flags.listen ? Number(flags.listen.split(':').pop()) : undefined;
    if (grpcPort === undefined) report(file, deployment, `${where}: no port named ${kGrpcPortName}`);
    if (listenPort !== undefined && listenPort !== grpcPort) {
      report(file, deployment, `${where}: --listen port ${listenPort} is not the ${kGrpcPortName} port ${grpcPort}`);
    }
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const p = c[probe];
      if (!p?.grpc) {
        report(file, deployment, `${where}: ${probe} must be a grpc probe`);
      } else if (p.grpc.port !== grpcPort) {
        report(file, deployment, `${where}: ${probe} port ${p.grpc.port} is not the ${kGrpcPortName} port ${grpcPort}`);
      }
    }
    if (c.readinessProbe?.grpc && c.readinessProbe.grpc.service !== kReadinessService) {
      report(file, deployment, `${where}: readinessProbe must check service ${kReadinessService}`);
    }

  }
  return kvserveFlags;
}

// Services, PodDisruptionBudgets, autoscalers and ServiceMonitors must point at pods of a
// Deployment in the render (and Services at their container ports).
function checkPointers(file, docs) {
  const deployments = docs.filter((d) => d.kind === 'Deployment');
  const names = deployments.map((d) => d.metadata?.name).join(', ');
  const matching = (selector) => deployments.filter((d) => selectorMatches(selector, podLabelsOf(d)));
  for (const d of docs) {
    if (d.kind === 'Service') {
      const targets = matching(d.spec?.selector);
      if (targets.length === 0) report(file, d, `selector matches no pod of ${names}`);
      const portNames = new Set(targets.flatMap((t) => (t.spec.template.spec.containers ?? [])
          .flatMap((c) => (c.ports ?? []).map((p) => p.name))));
      for (const p of targets.length > 0 ? d.spec.ports ?? [] : []) {
        if (typeof p.targetPort === 'string' && !portNames.has(p.targetPort)) {
          report(file, d, `targetPort ${p.targetPort} is not a container port of ${targets.map((t) => t.metadata.name).join(', ')}`);
        }
      }
    }
    if (d.kind === 'PodDisruptionBudget' && matching(d.spec?.selector?.matchLabels).length === 0) {
      report(file, d, `selector matches no pod of ${names}`);
    }
    if (d.kind === 'HorizontalPodAutoscaler') {
      const ref = d.spec?.scaleTargetRef ?? {};
      if (ref.kind === 'Deployment' && !byKindName(docs, 'Deployment', ref.name)) {
        report(file, d, `scaleTargetRef Deployment ${ref.name} is not in this render`);
      }
    }
    if (d.kind === 'ServiceMonitor') {
      const services = docs.filter((s) => s.kind === 'Service' && selectorMatches(d.spec?.selector?.matchLabels, s.metadata?.labels));
      if (services.length === 0) report(file, d, 'selector matches no Service');
      for (const e of d.spec?.endpoints ?? []) {
        if (!services.some((s) => (s.spec?.ports ?? []).some((p) => p.name === e.port))) {
          report(file, d, `endpoint port ${e.port} is not a port of the selected Services`);
        }
      }
    }
  }
}

// The series kvserve exports: every `kvserve_*` name in the first column of docs/metrics.md's
// tables.
function exportedSeries(metricsDoc) {
  const names = new Set();
  for (const m of fs.readFileSync(metricsDoc, 'utf8').matchAll(/^\| `(kvserve_[a-z0-9_]+)`/gm)) names.add(m[1]);
  return names;
}

// The EPP flags that name a kvserve series (the model-server protocol's gauges, cache info).
const kEppMetricFlags = [
  'total-queued-requests-metric', 'total-running-requests-metric',
  'kv-cache-usage-percentage-metric', 'cache-info-metric',
];

// The inference gateway variant, within one render: each InferencePool's pods, ports and picker,
// the picker's scrape target, metric names and prefix block size, and every HTTPRoute's pools.
function checkInferenceGateway(file, docs, kvserveFlagsByDeployment, series) {
  const deployments = docs.filter((d) => d.kind === 'Deployment');
  for (const pool of docs.filter((d) => d.kind === 'InferencePool')) {
    const spec = pool.spec ?? {};
    const members = deployments.filter((d) => kvserveFlagsByDeployment.has(d) &&
                                              selectorMatches(spec.selector?.matchLabels, podLabelsOf(d)));
    if (members.length === 0) {
      report(file, pool, 'selector matches no kvserve pod');
      continue;
    }
    const target = spec.targetPorts?.[0]?.number;
    for (const m of members) {
      const flags = kvserveFlagsByDeployment.get(m);
      const kvserve = m.spec.template.spec.containers.find((c) => c.name === kKvserveContainer);
      const httpPort = portOf(flags['http-address']);
      if (httpPort === undefined) {
        report(file, pool, `${m.metadata.name} serves no HTTP API (--http-address) for the pool to target`);
      } else if (target !== httpPort) {
        report(file, pool, `targetPorts[0].number ${target} is not kvserve's --http-address port ${httpPort}`);
      }
      if (!(kvserve.ports ?? []).some((p) => p.containerPort === target)) {
        report(file, pool, `targetPorts[0].number ${target} is not a container port of ${m.metadata.name}`);
      }
    }
    const kvserveFlags = kvserveFlagsByDeployment.get(members[0]);
    const kvserveContainer = members[0].spec.template.spec.containers.find((c) => c.name === kKvserveContainer);

    // The picker: the Service the pool names, and the Deployment behind it that serves this pool.
    const ref = spec.endpointPickerRef ?? {};
    const service = (ref.kind ?? 'Service') === 'Service' ? byKindName(docs, 'Service', ref.name) : undefined;
    if (!service) {
      report(file, pool, `endpointPickerRef Service ${ref.name} is not in this render`);
    } else if (!(service.spec?.ports ?? []).some((p) => p.port === ref.port?.number)) {
      report(file, pool, `endpointPickerRef port ${ref.port?.number} is not a port of Service ${ref.name}`);
    }
    const pickers = deployments.filter((d) => service && selectorMatches(service.spec?.selector, podLabelsOf(d)));
    if (service && pickers.length === 0) report(file, pool, `Service ${ref.name} selects no endpoint picker pod`);
    for (const epp of pickers) {
      for (const c of epp.spec.template.spec.containers ?? []) {
        const {flags} = containerFlags(file, epp, c, docs, null);
        if (flags['pool-name'] !== pool.metadata.name) {
          report(file, epp, `container ${c.name}: --pool-name=${flags['pool-name']} is not the pool ${pool.metadata.name} that names it`);
        }
        // Scrape target: kvserve's metrics port, not the pool's target port.
        const metricsPort = portOf(kvserveFlags['metrics-address']);
        const scraped = Number(flags['model-server-metrics-port'] ?? target);
        if (scraped !== metricsPort ||
            !(kvserveContainer.ports ?? []).some((p) => p.containerPort === scraped)) {
          report(file, epp, `container ${c.name}: scrapes port ${scraped}, but kvserve serves /metrics on ${metricsPort} (--metrics-address)`);
        }
        for (const name of kEppMetricFlags) {
          const metric = flags[name]?.replace(/\{.*$/, '');
          if (metric === undefined) {
            report(file, epp, `container ${c.name}: --${name} unset: the picker would read vLLM's series`);
          } else if (series && !series.has(metric)) {
            report(file, epp, `container ${c.name}: --${name}=${metric}: kvserve exports no such series (docs/metrics.md)`);
          }
        }
        // Prefix hashing in kvserve's cache blocks.
        const configFile = flags['config-file'];
        const mount = (c.volumeMounts ?? []).find((v) => configFile?.startsWith(`${v.mountPath}/`));
        const volume = (epp.spec.template.spec.volumes ?? []).find((v) => v.name === mount?.name);
        const config = byKindName(docs, 'ConfigMap', volume?.configMap?.name)?.data?.[path.basename(configFile ?? '')];
        if (config === undefined) {
          report(file, epp, `container ${c.name}: --config-file=${configFile} is not a ConfigMap key mounted in this render`);
          continue;
        }
        const blockSize = Number(kvserveFlags['block-size'] ?? kDefaultBlockSize);
        for (const plugin of (yaml.load(config)?.plugins ?? []).filter((p) => p.type === 'prefix-cache-scorer')) {
          const params = plugin.parameters ?? {};
          if (params.autoTune !== false) continue;  // read from kvserve_cache_config_info
          if (params.blockSizeTokens !== blockSize) {
            report(file, epp, `prefix-cache-scorer blockSizeTokens ${params.blockSizeTokens} is not kvserve's --block-size ${blockSize}`);
          }
        }
      }
    }
  }
  for (const route of docs.filter((d) => d.kind === 'HTTPRoute')) {
    for (const rule of route.spec?.rules ?? []) {
      for (const b of rule.backendRefs ?? []) {
        if (b.kind === 'InferencePool' && !byKindName(docs, 'InferencePool', b.name)) {
          report(file, route, `backendRef InferencePool ${b.name} is not in this render`);
        }
      }
    }
  }
}

// Metric names that prometheus-adapter configs among the inputs serve (rules[].name.as, or the
// series name of seriesQuery when there is no `as`).
function adapterMetrics(allDocs) {
  const names = new Set();
  let found = false;
  for (const {doc} of allDocs) {
    const config = doc.kind === 'ConfigMap' ? doc.data?.['config.yaml'] : undefined;
    if (!config) continue;
    const parsed = yaml.load(config);
    if (!Array.isArray(parsed?.rules)) continue;
    found = true;
    for (const rule of parsed.rules) {
      const series = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(rule.seriesQuery ?? '')?.[1];
      names.add(rule.name?.as ?? series);
    }
  }
  return found ? names : null;
}

// ---------------------------------------------------------------------------------------------

const helpFlags = options.help ? knownFlags(options.help) : null;
const series = options.metricsDoc ? exportedSeries(options.metricsDoc) : null;
const all = [];
for (const file of options.files) {
  let docs;
  try {
    docs = yaml.loadAll(fs.readFileSync(file, 'utf8')).filter((d) => d);
  } catch (e) {
    report(file, null, `not YAML: ${e.message}`);
    continue;
  }
  if (docs.length === 0) report(file, null, 'no objects');
  for (const doc of docs) {
    checkSchema(file, doc);
    all.push({file, doc});
  }
  if (options.schemaOnly) continue;
  const kvserveFlags = new Map();
  for (const d of docs.filter((d) => d.kind === 'Deployment')) {
    const flags = checkDeployment(file, d, docs, helpFlags);
    if (flags) kvserveFlags.set(d, flags);
  }
  if (docs.some((d) => d.kind === 'Deployment')) checkPointers(file, docs);
  checkInferenceGateway(file, docs, kvserveFlags, series);
}

const served = options.schemaOnly ? null : adapterMetrics(all);
if (served) {
  for (const {file, doc} of all.filter(({doc}) => doc.kind === 'HorizontalPodAutoscaler')) {
    for (const m of doc.spec?.metrics ?? []) {
      if (m.type === 'Pods' && !served.has(m.pods?.metric?.name)) {
        report(file, doc, `Pods metric ${m.pods?.metric?.name} is served by no prometheus-adapter rule`);
      }
    }
  }
}

for (const p of problems) console.log(p);
console.log(`validate_manifests: ${all.length} objects in ${options.files.length} file(s), ${problems.length} problem(s)`);
process.exit(problems.length === 0 ? 0 : 1);
