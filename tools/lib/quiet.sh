# Shared by tools/with-stack and tools/image: set-up steps (apt-get on the host, mmdebstrap building
# a root) without their progress lines ("Reading package lists...", "(Reading database ... 5%") on
# the terminal. Sourced, not run. Quiet by default: a step's output goes to a log that is shown
# only if the step fails; FMNIST_VERBOSE=1 shows it as it comes.

# quietly CMD...: run CMD with its output kept back unless it fails (then shown on stderr).
quietly() {
  local out status=0
  if [ -n "${FMNIST_VERBOSE:-}" ]; then
    "$@" >&2
    return
  fi
  out=$(mktemp /tmp/fmnist-setup-XXXXXX.log)
  "$@" >"$out" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    printf '%s failed (exit %s):\n' "$*" "$status" >&2
    cat "$out" >&2
  fi
  rm -f "$out"
  return "$status"
}

# apt_install_quietly [OPTIONS] PACKAGES...: apt-get update and install, non-interactive.
apt_install_quietly() {
  quietly apt-get update -qq && \
    quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@"
}
