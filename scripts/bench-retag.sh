#!/usr/bin/env bash
# Benchmarks promotion by digest: `gantry retag` / `gantry copy` against `skopeo copy`, on the same
# docker-registry on loopback.
#
# For a 1 MiB and a 1 GiB image (one layer of random bytes, built here as an OCI layout):
#   - same-repository retag:  app:v1 -> app:<new tag>
#   - cross-repository promotion:  app:v1 -> <fresh repository>/app:v1 (blob mount)
# Targets: gantry at most 0.3x skopeo's time, and gantry's times flat (within 20 %) between the
# two sizes. The pushes of the images into the registry (layout -> registry, a streamed copy for
# both tools) are timed once each, for information.
#
# How it measures:
#   - one untimed warm-up round of every operation first (page cache, registry, both binaries);
#   - ROUNDS timed rounds; each round times every operation, tool and size REPEAT times, the
#     two sizes of one tool and operation back to back (so a slow moment of the machine hits
#     both sides of the flatness ratio alike), with the tool and the size going first
#     alternating;
#   - medians are compared; the quartiles and the minimum show the spread;
#   - the registry's storage is a tmpfs by default (STORAGE=tmpfs, when /dev/shm has room):
#     docker-registry fsyncs every link file it writes for a tag, the same for both tools, and
#     on a shared disk that wait swamps what the tools themselves take. STORAGE=disk keeps it on
#     disk, for comparison;
#   - `--version` of each tool is timed too: the cost of starting the process at all.
#
# Environment: ROUNDS (default 21), REPEAT (default 3), SIZES (bytes, default "1048576 1073741824"),
# STORAGE (tmpfs or disk), GANTRY (a gantry binary to use instead of building one with `cargo build
# --release`), KEEP=1 keeps the work dir. Needs: docker-registry, skopeo, sha256sum, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-21}
REPEAT=${REPEAT:-3}
SIZES=${SIZES:-"1048576 1073741824"}

for tool in docker-registry skopeo sha256sum curl python3; do
  command -v "$tool" >/dev/null || { echo "bench-retag: $tool is missing (scripts/test-deps.sh installs it)" >&2; exit 2; }
done

if [[ -z ${GANTRY:-} ]]; then
  echo "building gantry (release)..." >&2
  cargo build --quiet --release --bin gantry
  GANTRY="${CARGO_TARGET_DIR:-target}/release/gantry"
fi
[[ -x $GANTRY ]] || { echo "bench-retag: $GANTRY is not an executable" >&2; exit 2; }

work=$(mktemp -d)
largest=$(tr ' ' '\n' <<<"$SIZES" | grep -v '^$' | sort -g | tail -1)
# Each size is stored twice (one push per tool), plus room for the registry's own files.
need_kib=$(( (largest * 2 + 268435456) / 1024 ))
shm_free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || echo 0)
STORAGE=${STORAGE:-$([[ ${shm_free_kib:-0} -gt $need_kib ]] && echo tmpfs || echo disk)}
case $STORAGE in
  tmpfs) storage=$(mktemp -d /dev/shm/bench-retag.XXXXXX) ;;
  disk) storage=$work/storage ;;
  *) echo "bench-retag: STORAGE must be tmpfs or disk, not $STORAGE" >&2; exit 2 ;;
esac
registry_pid=""
cleanup() {
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $work and $storage" >&2; else rm -rf "$work" "$storage"; fi
}
trap cleanup EXIT

# --- a registry on a free loopback port -------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
registry="127.0.0.1:$port"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $registry
  secret: gantry-bench
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$registry/v2/" >/dev/null || { cat "$work/registry.log" >&2; exit 1; }

# --- images -----------------------------------------------------------------------------------
# Writes an OCI layout $1/app holding one image tagged v1 with a random layer of $2 bytes.
make_layout() {
  local dir=$1/app size=$2
  mkdir -p "$dir/blobs/sha256" "$1/payload"
  head -c "$size" /dev/urandom >"$1/payload/data"
  tar -C "$1/payload" -cf "$1/layer.tar" data
  rm -rf "$1/payload"
  local layer_digest layer_size
  layer_digest=$(sha256sum "$1/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$1/layer.tar")
  mv "$1/layer.tar" "$dir/blobs/sha256/$layer_digest"
  local config
  config=$(printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$layer_digest")
  local config_digest
  config_digest=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
  printf '%s' "$config" >"$dir/blobs/sha256/$config_digest"
  local manifest
  manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
    "$config_digest" "${#config}" "$layer_digest" "$layer_size")
  local manifest_digest
  manifest_digest=$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
  printf '%s' "$manifest" >"$dir/blobs/sha256/$manifest_digest"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
    "$manifest_digest" "${#manifest}" >"$dir/index.json"
}

# Runs a command quietly and prints how long it took, in milliseconds with two decimals.
# $EPOCHREALTIME needs no extra process, so nothing but the command itself is timed.
timed() {
  local start end
  start=$EPOCHREALTIME
  "$@" >/dev/null 2>"$work/last.err" || { echo "bench-retag: failed: $*" >&2; cat "$work/last.err" >&2; exit 1; }
  end=$EPOCHREALTIME
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", (b - a) * 1000 }'
}
# Prints "median p25 p75 min" of the numbers on standard input.
stats() {
  tr ' ' '\n' | grep -v '^$' | sort -g | awk '
    function q(p,  i) { i = 1 + (NR - 1) * p; return v[int(i)] + (i - int(i)) * (v[int(i) + 1] - v[int(i)]) }
    { v[NR] = $1 }
    END { printf "%.2f %.2f %.2f %.2f", q(0.5), q(0.25), q(0.75), v[1] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
human() { awk -v b="$1" 'BEGIN { if (b >= 1073741824) printf "%d GiB", b / 1073741824; else printf "%d MiB", b / 1048576 }'; }

skopeo_copy() { skopeo copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false "$@"; }

declare -A results samples spread
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "gantry: $GANTRY; $(skopeo --version); registry: $registry, storage on $STORAGE; rounds: $ROUNDS" >&2
echo "machine: $(nproc) cores, load average $load_before" >&2
for size in $SIZES; do
  label=$(human "$size")
  echo "== $label: building and pushing the image..." >&2
  make_layout "$work/oci-$size" "$size"
  # Both tools push the same image once (a streamed copy of every blob), into their own repository.
  results[push,skopeo,$size]=$(timed skopeo_copy "oci:$work/oci-$size/app:v1" "docker://$registry/bench-$size/app:v1")
  results[push,gantry,$size]=$(timed "$GANTRY" copy "oci-layout:$work/oci-$size/app:v1" "$registry/push-$size/app:v1")
  rm -rf "$work/oci-$size"
done
# Writing gigabytes leaves the disk busy for a while; let it settle so that it slows no round.
sync
sleep 2

# One round: every operation, tool and size, each timed REPEAT times in a row. The two sizes of
# one tool and operation are timed back to back, so that a slow moment of the machine hits both
# sides of the flatness ratio alike; the tool and the size going first alternate between rounds.
# $1 is the round's name (it names the tags and repositories written), $2 whether to keep the
# times.
round() {
  local name=$1 keep=$2 op tool size repo rep time sizes=$SIZES tools="skopeo gantry"
  if [[ $name == *[02468] ]]; then
    sizes=$(tr ' ' '\n' <<<"$SIZES" | grep -v '^$' | tac | tr '\n' ' ')
    tools="gantry skopeo"
  fi
  for op in retag mount; do
    for tool in $tools; do
      for size in $sizes; do
        repo="bench-$size/app"
        for rep in $(seq "$REPEAT"); do
          case $op,$tool in
            retag,skopeo) time=$(timed skopeo_copy "docker://$registry/$repo:v1" "docker://$registry/$repo:skopeo-$name-$rep") ;;
            mount,skopeo) time=$(timed skopeo_copy "docker://$registry/$repo:v1" "docker://$registry/skopeo-$name-$rep-$size/app:v1") ;;
            retag,gantry) time=$(timed "$GANTRY" retag "$registry/$repo:v1" "gantry-$name-$rep") ;;
            mount,gantry) time=$(timed "$GANTRY" copy "$registry/$repo:v1" "$registry/gantry-$name-$rep-$size/app:v1") ;;
          esac
          if [[ $keep == 1 ]]; then samples[$op,$tool,$size]+=" $time"; fi
        done
      done
    done
  done
  if [[ $keep == 1 ]]; then
    samples[start,gantry,0]+=" $(timed "$GANTRY" --version)"
    samples[start,skopeo,0]+=" $(timed skopeo --version)"
  fi
}

echo "== warm-up round..." >&2
round warmup 0
echo "== timing $ROUNDS rounds..." >&2
for r in $(seq "$ROUNDS"); do round "$r" 1; done
for key in "${!samples[@]}"; do
  read -r median p25 p75 minimum <<<"$(stats <<<"${samples[$key]}")"
  results[$key]=$median
  spread[$key]="$p25..$p75 (min $minimum)"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The promoted digests must be the pushed ones: compare what the registry serves.
for size in $SIZES; do
  want=$(curl -fsSI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$registry/v2/bench-$size/app/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
  for ref in "bench-$size/app/manifests/gantry-1-1" "gantry-1-1-$size/app/manifests/v1" "push-$size/app/manifests/v1"; do
    got=$(curl -fsSI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$registry/v2/$ref" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
    [[ $got == "$want" ]] || { echo "bench-retag: $ref is $got, expected $want" >&2; exit 1; }
  done
done

echo
printf '%-31s %6s %9s %22s %9s %22s %8s\n' "operation (median of $((ROUNDS * REPEAT)))" size "gantry ms" "gantry p25..p75 (min)" "skopeo ms" "skopeo p25..p75 (min)" ratio
for op in retag mount; do
  case $op in
    retag) name="same-repo retag" ;;
    mount) name="cross-repo promotion" ;;
  esac
  for size in $SIZES; do
    printf '%-31s %6s %9s %22s %9s %22s %8s\n' "$name" "$(human "$size")" \
      "${results[$op,gantry,$size]}" "${spread[$op,gantry,$size]}" \
      "${results[$op,skopeo,$size]}" "${spread[$op,skopeo,$size]}" \
      "$(ratio "${results[$op,gantry,$size]}" "${results[$op,skopeo,$size]}")x"
  done
done
printf '%-31s %6s %9s %22s %9s %22s %8s\n' "process start (--version)" - "${results[start,gantry,0]}" "${spread[start,gantry,0]}" \
  "${results[start,skopeo,0]}" "${spread[start,skopeo,0]}" "$(ratio "${results[start,gantry,0]}" "${results[start,skopeo,0]}")x"
for size in $SIZES; do
  printf '%-31s %6s %9s %22s %9s %22s %8s\n' "push from layout (1 run, info)" "$(human "$size")" "${results[push,gantry,$size]}" "" \
    "${results[push,skopeo,$size]}" "" "$(ratio "${results[push,gantry,$size]}" "${results[push,skopeo,$size]}")x"
done

read -r small large <<<"$(tr ' ' '\n' <<<"$SIZES" | grep -v '^$' | sort -g | sed -n '1p;$p' | tr '\n' ' ')"
echo
echo "load average: $load_before before, $load_after after ($(nproc) cores); registry storage on $STORAGE"
verdict=0
for op in retag mount; do
  for size in $SIZES; do
    r=$(ratio "${results[$op,gantry,$size]}" "${results[$op,skopeo,$size]}")
    ok=$(awk -v r="$r" 'BEGIN { print (r <= 0.3) ? "ok" : "MISSED" }')
    [[ $ok == ok ]] || verdict=1
    echo "target $op $(human "$size"): gantry/skopeo = ${r}x (<= 0.3x) $ok"
  done
  flat=$(ratio "${results[$op,gantry,$large]}" "${results[$op,gantry,$small]}")
  ok=$(awk -v r="$flat" 'BEGIN { print (r >= 0.8 && r <= 1.2) ? "ok" : "MISSED" }')
  [[ $ok == ok ]] || verdict=1
  echo "target $op flat: gantry $(human "$large") / $(human "$small") = ${flat}x (0.8x..1.2x) $ok"
done
exit $verdict
