#!/usr/bin/env bash
# Checks the deployment files without a cluster: the Helm chart (deploy/helm/eddy) is linted, rendered with its
# default values and with every option on (ci/*.yaml), and the manifests are validated against the Kubernetes JSON
# schemas bundled with a Python package; the chart's config file may use only keys the server reads, and the server
# must start on it and stop on SIGTERM. The image is built and run when Docker works; otherwise the `eddy` binary is
# run and the Dockerfile is read.
# Tools are installed once and cached under ~/.cache/eddy-tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
tools="${EDDY_TOOLS:-$HOME/.cache/eddy-tools}"
helm_version=v4.3.2
validator_version=1.37.0
# The oldest Kubernetes the chart allows (Chart.yaml's kubeVersion) and the newest the validator knows.
kube_versions=(1.27 1.37)
chart=deploy/helm/eddy
helm="$tools/go-bin/helm"
py="$tools/py/bin/python"
validate="$tools/py/bin/kubernetes-validate"
go="${GO:-/usr/local/go/bin/go}"
command -v "$go" >/dev/null || go=go

out="$(mktemp -d)"
pid=""
# A server this script started must not outlive it, whatever step failed.
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT

now_ms() { date +%s%3N; }
step_name="" step_start=0 script_start="$(now_ms)"
step() {
  end_step
  step_name="$1" step_start="$(now_ms)"
  echo "==> $1"
}
end_step() {
  if [ -n "$step_name" ]; then
    printf '    (%d ms)\n' "$(($(now_ms) - step_start))"
  fi
}
fail() {
  echo "FAILED: $*" >&2
  exit 1
}

step "helm $helm_version (cached in $tools/go-bin)"
# `helm version` of a go-installed helm shows no patch number; the module version in the binary does.
if ! "$go" version -m "$helm" 2>/dev/null | awk -v v="$helm_version" '$1 == "mod" && $3 == v { found = 1 } END { exit !found }'; then
  GOBIN="$tools/go-bin" nice -n 19 "$go" install "helm.sh/helm/v4/cmd/helm@$helm_version"
fi
"$go" version -m "$helm" | awk '$1 == "mod" { print "    " $2 " " $3 }'

step "kubernetes-validate $validator_version (offline Kubernetes schemas, in $tools/py)"
if [ "$("$validate" --version 2>/dev/null)" != "$validator_version" ]; then
  [ -x "$py" ] || python3 -m venv "$tools/py"
  "$tools/py/bin/pip" install --quiet "kubernetes-validate==$validator_version"
fi

# Default values, then each file of values under ci/.
value_sets=(default)
for file in "$chart"/ci/*.yaml; do value_sets+=("$file"); done
values_args() { [ "$1" = default ] || echo "--values=$1"; }
rendered() { echo "$out/$(basename "$1" .yaml).yaml"; }

step "helm lint --strict (${#value_sets[@]} value sets)"
for set in "${value_sets[@]}"; do
  echo "    $set"
  # shellcheck disable=SC2046
  "$helm" lint --strict --quiet "$chart" $(values_args "$set") >"$out/lint.log" 2>&1 ||
    { cat "$out/lint.log"; fail "helm lint with $set"; }
done

step "helm template"
for set in "${value_sets[@]}"; do
  # shellcheck disable=SC2046
  "$helm" template eddy "$chart" --namespace streaming $(values_args "$set") >"$(rendered "$set")"
  printf '    %s: %s\n' "$set" "$(grep -E '^kind: ' "$(rendered "$set")" | sed 's/kind: //' | sort | tr '\n' ' ')"
done

step "the chart refuses settings that cannot work"
# Each must fail with its own message, not for some other reason.
refused() {
  local why="$1" message="$2"
  shift 2
  if "$helm" template eddy "$chart" "$@" >/dev/null 2>"$out/refusal.log"; then
    fail "helm template accepted $why ($*)"
  fi
  grep -q "$message" "$out/refusal.log" || { cat "$out/refusal.log"; fail "$why: refused for another reason"; }
  echo "    refused: $why"
}
refused "several replicas without cluster mode" "replicas > 1 needs cluster.enabled" --set replicas=3
refused "cluster mode without a database Secret" "needs cluster.database.existingSecret" --set cluster.enabled=true
refused "no admin token and no tenants" "needs an admin token or tenants" --set auth.adminToken.existingSecret=
refused "listen in config.settings" "config.settings.listen is set by the chart" --set config.settings.listen=x
refused "a table in config.settings" "belongs in its own section" --set config.settings.quota.jobs=1
refused "a preStop wait as long as the grace period" "preStopSleepSeconds must be shorter" \
  --set preStopSleepSeconds=120
refused "several nodes with local checkpoints" "needs checkpoints every node reaches" \
  --set replicas=3,cluster.enabled=true,cluster.database.existingSecret=db
refused "a node id in cluster.settings" "cluster.settings.node_id is set by the chart" \
  --set cluster.enabled=true,cluster.database.existingSecret=db,cluster.settings.node_id=a

step "Kubernetes schemas (strict: unknown fields are errors), versions ${kube_versions[*]}"
for set in "${value_sets[@]}"; do
  for version in "${kube_versions[@]}"; do
    "$validate" --strict --quiet -k "$version" "$(rendered "$set")" ||
      fail "$set does not validate against Kubernetes $version"
  done
  echo "    $set: valid"
done
# A check that cannot fail checks nothing: a wrong type and an unknown field must both be refused.
sed 's/^  replicas: .*/  replicas: "three"/' "$(rendered default)" >"$out/broken-type.yaml"
sed 's/^  podManagementPolicy: .*/&\n  replicaCount: 3/' "$(rendered default)" >"$out/broken-field.yaml"
for broken in broken-type broken-field; do
  if "$validate" --strict --quiet "$out/$broken.yaml" >/dev/null 2>&1; then
    fail "the validator accepted a manifest with a $broken"
  fi
done
echo "    a wrong type and an unknown field: refused"

step "what the manifests promise (probes, security, secrets, config keys the server reads)"
renders=()
for set in "${value_sets[@]}"; do renders+=("$(rendered "$set")"); done
"$py" - "$chart" "${renders[@]}" <<'PY'
import pathlib, re, sys, tomllib, yaml

chart, renders = sys.argv[1], sys.argv[2:]
src = {p: p.read_text() for p in pathlib.Path("server/app/src").rglob("*.rs")}
problems = []

def fields(kind, name):
    """Field names of a Rust struct or enum of the server, wherever it lives."""
    for text in src.values():
        m = re.search(rf"\b{kind} {name}\b[^{{]*\{{(.*?)\n\}}", text, re.S)
        if m:
            return set(re.findall(r"^\s+(?:pub\s+)?(\w+):", m.group(1), re.M))
    problems.append(f"no `{kind} {name}` in server/app/src: update tests/deploy.sh")
    return set()

top = fields("struct", "FileConfig")
tables = {
    "cluster": fields("struct", "ClusterConfig"),
    "checkpoints": fields("enum", "CheckpointStorage") | fields("struct", "S3Settings") | {"storage"},
    "quota": fields("struct", "QuotaOverrides"),
    "tenants": fields("struct", "TenantConfig"),
}
env_read = lambda name: any(f'"{name}"' in text for text in src.values())

def check_keys(where, table, allowed):
    for key in table:
        if key not in allowed:
            problems.append(f"{where}: the server reads no key `{key}`")

values = yaml.safe_load(pathlib.Path(chart, "values.yaml").read_text())
for render in renders:
    name = pathlib.Path(render).name
    docs = [d for d in yaml.safe_load_all(pathlib.Path(render).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    missing = [kind for kind in ("StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget") if kind not in by_kind]
    if missing:
        problems.append(f"{name}: no {', '.join(missing)}")
        continue
    pod = by_kind["StatefulSet"][0]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc, psc = c["securityContext"], pod["securityContext"]
    expect = {
        "liveness probe": c["livenessProbe"]["httpGet"]["path"] == "/health",
        "readiness probe": c["readinessProbe"]["httpGet"]["path"] == "/ready",
        "non-root": sc["runAsNonRoot"] and psc["runAsNonRoot"] and sc["runAsUser"] == psc["runAsUser"] == 10001,
        "no privilege escalation": sc["allowPrivilegeEscalation"] is False,
        "read-only root": sc["readOnlyRootFilesystem"] is True,
        "capabilities dropped": sc["capabilities"]["drop"] == ["ALL"],
        "seccomp": sc["seccompProfile"]["type"] == psc["seccompProfile"]["type"] == "RuntimeDefault",
        "grace period": pod["terminationGracePeriodSeconds"] >= 120,
        "resources": "requests" in c["resources"] and "limits" in c["resources"],
        "data volume": any(m["name"] == "data" and m["mountPath"] == values["persistence"]["mountPath"]
                           for m in c["volumeMounts"]),
    }
    problems += [f"{name}: {what}" for what, ok in expect.items() if not ok]

    env = {e["name"]: e for e in c["env"]}
    for var in env:
        if var.startswith("EDDY_") and not env_read(var):
            problems.append(f"{name}: the server reads no {var}")
    for var, e in env.items():
        if var in ("EDDY_ADMIN_TOKEN_SHA256", "EDDY_TENANTS", "EDDY_CLUSTER_DATABASE", "AWS_ACCESS_KEY_ID",
                   "AWS_SECRET_ACCESS_KEY") and "secretKeyRef" not in e.get("valueFrom", {}):
            problems.append(f"{name}: {var} does not come from a Secret")

    config = tomllib.loads(by_kind["ConfigMap"][0]["data"]["eddy.toml"])
    check_keys(f"{name}: eddy.toml", config, top)
    for table, allowed in tables.items():
        for entry in config.get(table, []) if table == "tenants" else [config.get(table, {})]:
            check_keys(f"{name}: [{table}]", entry, allowed)
    if config["listen"] != env["EDDY_LISTEN"]["value"] or config["data_dir"] != env["EDDY_DATA_DIR"]["value"]:
        problems.append(f"{name}: EDDY_LISTEN / EDDY_DATA_DIR differ from the config file's")
    print(f"    {name}: probes, security context, secrets and {len(config)} config keys as expected")

for problem in problems:
    print(f"    PROBLEM: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY

step "the eddy binary (built with RocksDB and Kafka, as tests/run.sh does)"
eddy="$CARGO_TARGET_DIR/debug/eddy"
if [ ! -x "$eddy" ]; then
  nice -n 19 cargo build --bins --features eddy-server/rocksdb,eddy-server/kafka
fi
echo "    $eddy"

step "the server starts on each rendered eddy.toml"
# The Secrets' values are stand-ins; a clean environment keeps the caller's EDDY_* and AWS_* settings out.
admin_hash="$(printf '0%.0s' {1..64})"
for render in "${renders[@]}"; do
  config="${render%.yaml}.toml" data="$(mktemp -d "$out/data.XXXX")" log="$out/serve.log"
  "$py" -c 'import sys, yaml
print(next(d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "ConfigMap")["data"]["eddy.toml"])' \
    <"$render" >"$config"
  env -i PATH="$PATH" HOME="$HOME" EDDY_ADMIN_TOKEN_SHA256="$admin_hash" AWS_ACCESS_KEY_ID=check \
    AWS_SECRET_ACCESS_KEY=check AWS_EC2_METADATA_DISABLED=true \
    "$eddy" serve --config "$config" --listen 127.0.0.1:0 --data-dir "$data" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 150); do
    grep -q "listening on http://" "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q "listening on http://" "$log"; then
    cat "$log"
    fail "the server did not start on the config rendered into $(basename "$render")"
  fi
  # The probes' paths, on the server itself.
  url="$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/listening on //')"
  for path in /health /ready; do
    curl -fsS -o /dev/null "$url$path" || fail "GET $path of a started server did not answer 200"
  done
  # SIGTERM, as Kubernetes sends it: the server must stop by itself.
  kill -TERM "$pid"
  wait "$pid" || fail "the server exited with $? on SIGTERM"
  pid=""
  echo "    $(basename "$config"): started, /health and /ready 200, stopped on SIGTERM"
done

app_version="$(awk -F'"' '/^appVersion:/ { print $2 }' "$chart/Chart.yaml")"
chart_uid="$(awk '/^podSecurityContext:/ { p = 1 } p && /runAsUser:/ { print $2; exit }' "$chart/values.yaml")"
if docker info >/dev/null 2>&1; then
  step "Docker image: build, eddy --version, user, HEALTHCHECK"
  nice -n 19 docker build --quiet -t eddy:deploy-check . >/dev/null
  version="$(docker run --rm eddy:deploy-check --version)"
  user="$(docker image inspect --format '{{.Config.User}}' eddy:deploy-check)"
  docker image inspect --format '{{.Config.Healthcheck.Test}}' eddy:deploy-check | grep -q /health ||
    fail "the image has no HEALTHCHECK on /health"
else
  step "Docker is not available: eddy --version, and the Dockerfile read"
  version="$("$eddy" --version)"
  # The runtime stage is what follows the last FROM; its last USER is the one the server runs as.
  final_stage="$(awk '/^FROM /{ stage = "" } { stage = stage $0 "\n" } END { printf "%s", stage }' Dockerfile)"
  user="$(printf '%s' "$final_stage" | awk '$1 == "USER" { u = $2 } END { print u }')"
  { printf '%s' "$final_stage" | grep -q '^HEALTHCHECK ' && printf '%s' "$final_stage" | grep -q '/health'; } ||
    fail "the Dockerfile's runtime stage has no HEALTHCHECK on /health"
  { grep -Eq 'cargo build .*--features[ =][^ ]*rocksdb' Dockerfile &&
    grep -Eq 'cargo build .*--features[ =][^ ]*kafka' Dockerfile; } ||
    fail "the Dockerfile does not build eddy with the rocksdb and kafka features"
fi
echo "    $version; runs as user '$user'"
uid="${user%%:*}"
case "$uid" in
  "" | root | 0) fail "the image runs as root" ;;
esac
[ "$uid" = "$chart_uid" ] || fail "the image's user ($uid) is not the chart's runAsUser ($chart_uid)"
[ "$version" = "eddy $app_version" ] || fail "eddy reports '$version' but Chart.yaml's appVersion is $app_version"
end_step

echo "Deployment checks passed in $(($(now_ms) - script_start)) ms."
