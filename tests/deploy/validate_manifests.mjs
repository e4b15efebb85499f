// Validates rendered Kubernetes manifests (multi-document YAML, one file per `kubectl kustomize`
// output) in two passes:
//
//   schema  every object against the OpenAPI schema of its kind (npm kubernetes-models and
//           @kubernetes-models/prometheus-operator): wrong types, missing required fields, bad
//           enum values. Unknown fields are not caught by these models; the policy pass catches
//           the ones that matter by requiring them.
//   policy  what kvserve needs from its Deployment, checked within each file: memory request =
//           limit, the KV-cache budget equal to limit - weights - headroom, a grace period longer
//           than preStop + drain, gRPC probes on the serving port (readiness per service), the
//           restricted security context, every $(VAR) defined, every --flag known to the binary,
//           and Services, PodDisruptionBudget, ServiceMonitor and HorizontalPodAutoscaler pointing
//           at the Deployment's pods. Across files: an autoscaler's Pods metric must be served
//           by a prometheus-adapter rule, when an adapter config is among the inputs.
//
//   node validate_manifests.mjs --modules DIR [--kvserve-help FILE] [--schema-only] MANIFEST.yaml...
//
// DIR holds node_modules with the packages in tests/deploy/package.json; FILE is the output of
// `kvserve --help`; --schema-only skips the policy pass (for files that are not a whole render).
// Prints one line per problem and exits 1 if there was any.
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';

const kReadinessService = 'kvserve.v1.KvServe';
const kGrpcPortName = 'grpc';
const kDrainMarginSeconds = 5;  // beyond preStop + --shutdown-timeout (1 s of it is kvserve's own)
const kDefaultShutdownTimeout = 30;  // kvserve's default

function parseArgs(argv) {
  const options = {modules: null, help: null, schemaOnly: false, files: []};
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--modules') options.modules = argv[++i];
    else if (argv[i] === '--kvserve-help') options.help = argv[++i];
    else if (argv[i] === '--schema-only') options.schemaOnly = true;
    else options.files.push(argv[i]);
  }
  if (!options.modules || options.files.length === 0) {
    console.error('usage: validate_manifests.mjs --modules DIR [--kvserve-help FILE] ' +
                  '[--schema-only] FILE...');
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

function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const modulePath = group === 'monitoring.coreos.com'
      ? `@kubernetes-models/prometheus-operator/${group}/${version}`
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

function checkDeployment(file, deployment, docs, helpFlags) {
  const pod = deployment.spec?.template?.spec ?? {};
  const podLabels = deployment.spec?.template?.metadata?.labels ?? {};
  if (!selectorMatches(deployment.spec?.selector?.matchLabels, podLabels)) {
    report(file, deployment, 'spec.selector does not match the pod template labels');
  }
  const byKindName = (kind, name) => docs.find((d) => d.kind === kind && d.metadata?.name === name);

  for (const c of pod.containers ?? []) {
    const where = `container ${c.name}`;
    // Environment: explicit env plus every referenced ConfigMap.
    const env = {};
    for (const ref of c.envFrom ?? []) {
      if (!ref.configMapRef) continue;
      const cm = byKindName('ConfigMap', ref.configMapRef.name);
      if (!cm) report(file, deployment, `${where}: envFrom ConfigMap ${ref.configMapRef.name} is not in this render`);
      Object.assign(env, cm?.data ?? {});
    }
    for (const e of c.env ?? []) env[e.name] = e.value;

    // Arguments with $(VAR) expanded, as the kubelet does, then parsed as kvserve flags.
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

    // Security: non-root, read-only root, no privilege escalation, no capabilities, seccomp.
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

  // Objects that point at the pods.
  const containerPortNames = new Set((pod.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => p.name)));
  for (const d of docs) {
    if (d.kind === 'Service' && selectorMatches(d.spec?.selector, podLabels)) {
      for (const p of d.spec.ports ?? []) {
        if (typeof p.targetPort === 'string' && !containerPortNames.has(p.targetPort)) {
          report(file, d, `targetPort ${p.targetPort} is not a container port of ${deployment.metadata.name}`);
        }
      }
    } else if (d.kind === 'Service') {
      report(file, d, `selector matches no pod of ${deployment.metadata.name}`);
    }
    if (d.kind === 'PodDisruptionBudget' && !selectorMatches(d.spec?.selector?.matchLabels, podLabels)) {
      report(file, d, `selector matches no pod of ${deployment.metadata.name}`);
    }
    if (d.kind === 'HorizontalPodAutoscaler') {
      const ref = d.spec?.scaleTargetRef ?? {};
      if (ref.kind === 'Deployment' && !byKindName('Deployment', ref.name)) {
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
  for (const d of docs.filter((d) => d.kind === 'Deployment')) checkDeployment(file, d, docs, helpFlags);
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
