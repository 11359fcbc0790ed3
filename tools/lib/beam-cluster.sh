# Shared by tools/flink and tools/spark: processes of a local Beam cluster, started in their own
# sessions with PID files under $state, and the parts fetched once into $cache. Sourced, not run;
# the caller sets: tag, top, cache, state, pool_port, n_workers, start_timeout.

log() { printf '[%s] %s\n' "$tag" "$*" >&2; }
die() { log "$*"; exit 2; }
java=${JAVA:-$(command -v java || ls /usr/lib/jvm/*/bin/java 2>/dev/null | head -n1 || true)}
need_java() {
  [ -n "$java" ] || die "Java is missing: the cluster and Beam's job server need a JRE 11 or 17 (apt-get install openjdk-17-jre-headless)"
}

# Worker i's Beam worker pool address: its own loopback address (tools/beam_worker_pool.py says why).
pool_ip() { echo "127.0.0.$(( $1 + 1 ))"; }
port_free() { ! (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }
pids() { cat "$state"/*.pid 2>/dev/null || true; }
alive() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
# GET on a local HTTP API (python3: the stack's root has no curl).
http_get() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }

# fetch_pypi_sdist NAME VERSION DIR: unpack a PyPI sdist's directory DIR... (the distributions the
# Flink and Spark Python packages carry) into $cache; prints nothing, dies with a message.
fetch_pypi_sdist() {
  local name=$1 version=$2 inner=$3 target=$4 tmp
  [ -e "$target/.complete" ] && return 0
  log "fetching $name $version from PyPI (once)"
  tmp=$(mktemp -d "$cache/$name.tmp.XXXXXX")
  python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" "$name==$version" >&2 \
    || { rm -rf "$tmp"; die "could not download $name==$version from PyPI"; }
  tar xzf "$tmp"/*.tar.gz -C "$tmp"
  rm -rf "$target"
  mv "$tmp"/*/"$inner" "$target"
  rm -rf "$tmp"
  touch "$target/.complete"
}

# fetch_job_server POM DIR: Beam's job server classpath, resolved from Maven Central once.
fetch_job_server() {
  local pom=$1 dir=$2
  [ -f "$dir/.complete" ] && return 0
  command -v mvn >/dev/null || die "Maven is missing: it resolves Beam's job server (apt-get install maven)"
  log "resolving Beam's job server from Maven Central ($pom, once)"
  rm -rf "$dir"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$dir" >&2 \
    || die "mvn could not resolve $pom (see the output above)"
  touch "$dir/.complete"
}

# start NAME CMD...: a new session (its own process group), so `down` stops its children too.
start() {
  local name=$1; shift
  setsid "$@" >"$state/log/$name.out" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}

# start_pool I: the Beam worker pool beside worker I, in the project's stack. BEAM_WORKER_ENV names
# a file of KEY=VALUE lines the pools (and so every SDK harness) get, as a Kubernetes sidecar gets its
# `env:` -- e.g. `tools/gcs env`, to reach a pipeline root on GCS.
start_pool() {
  local -a worker_env=()
  [ -z "${BEAM_WORKER_ENV:-}" ] || mapfile -t worker_env < <(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$BEAM_WORKER_ENV")
  start "worker-pool-$1" "$top/tools/with-stack" env "${worker_env[@]}" python "$top/tools/beam_worker_pool.py" \
    --address "$(pool_ip "$1"):$pool_port"
}

wait_for() {  # wait_for WHAT CHECK-COMMAND...
  local what=$1; shift
  local deadline=$((SECONDS + start_timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { log "$what did not come up within ${start_timeout}s; logs: $state/log"; down; exit 2; }
    sleep 1
  done
}

wait_pools() {
  local i
  for i in $(seq 1 "$n_workers"); do
    wait_for "Beam worker pool $i ($(pool_ip "$i"):$pool_port)" bash -c "exec 3<>/dev/tcp/$(pool_ip "$i")/$pool_port"
  done
}

check_ports() {  # check_ports PORT...: on 127.0.0.1, then the pools' on their own addresses
  local p i
  for p in "$@"; do
    port_free "$p" || die "port 127.0.0.1:$p is taken (another cluster or job server?): stop it, or move it (ports: the header of tools/$tag)"
  done
  for i in $(seq 1 "$n_workers"); do
    port_free "$pool_port" "$(pool_ip "$i")" || die "port $(pool_ip "$i"):$pool_port is taken (a worker pool listening on every address?): stop it, or set BEAM_WORKER_POOL_PORT"
  done
}

down() {
  local pid any=0
  for pid in $(pids); do
    kill -TERM -- "-$pid" 2>/dev/null && any=1 || true
  done
  # Bounded wait for the JVMs and pools to exit, then no mercy.
  for _ in $(seq 1 20); do
    local alive_any=0
    for pid in $(pids); do kill -0 -- "-$pid" 2>/dev/null && alive_any=1; done
    [ $alive_any = 0 ] && break
    sleep 0.5
  done
  for pid in $(pids); do kill -KILL -- "-$pid" 2>/dev/null || true; done
  rm -f "$state"/*.pid
  rm -rf "$state/work"   # the engine's scratch (job jars, spill files); logs and configuration stay
  [ $any = 0 ] || log "stopped"
}

# What `up` needs from the host when run inside tools/with-stack's Debian 13 root (the tests' own
# cluster): the JDK (Debian's keeps its config under /etc/java-N-openjdk) and the fetched parts.
binds() {
  local home; home=$(dirname "$(dirname "$(readlink -f "$java")")")
  echo "$home" /etc/java-*-openjdk "$cache"
}
