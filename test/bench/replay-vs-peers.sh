#!/usr/bin/env bash
# Offline pcap -> flows: `vigil replay` against softflowd and pmacctd on one
# large synthetic capture (test/captures/cmd/gencap), with tshark as the
# truth. Prints, per tool, wall and CPU (user+sys, children included)
# seconds, the flow records it wrote, the distinct unidirectional 5-tuples
# among them, packets and bytes; fails if any tool's packet total differs
# from tshark's or a tool fails.
#
#   test/bench/replay-vs-peers.sh [--packets N] [--flows N] [--seed S] [--keep]
#
# Needs: go, tshark, softflowd, nfcapd + nfdump, pmacctd, GNU time, timeout
# (Debian: apt-get install tshark softflowd nfdump pmacct time). Every
# step is bounded by STEP_TIMEOUT seconds (default 900). NetFlow goes
# from softflowd to an nfcapd bound to 127.0.0.1 only; nothing else
# touches the network. The capture (about 480 MB for the defaults) lives
# in a temporary directory that is removed at exit unless --keep.
set -euo pipefail

packets=1000000
flows=100000
seed=1
keep=0
while [ $# -gt 0 ]; do
	case "$1" in
	--packets) packets=$2; shift 2 ;;
	--flows) flows=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,17p' "$0"; exit 0 ;;
	*) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
STEP_TIMEOUT=${STEP_TIMEOUT:-900}

cd "$(dirname "$0")/../.."
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

# Tools, and the Debian package that has each.
missing=() pkgs=()
need() { # need COMMAND PACKAGE
	if ! command -v "$1" >/dev/null 2>&1; then
		missing+=("$1")
		pkgs+=("$2")
	fi
}
[ -x "$GO" ] || { missing+=(go); pkgs+=("(Go 1.26 in /usr/local/go)"); }
need tshark tshark
need softflowd softflowd
need nfcapd nfdump
need nfdump nfdump
need pmacctd pmacct
need timeout coreutils
need awk gawk
[ -x /usr/bin/time ] || { missing+=(/usr/bin/time); pkgs+=(time); }
if [ ${#missing[@]} -gt 0 ]; then
	echo "missing: ${missing[*]}" >&2
	echo "install with: apt-get install -y $(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench.XXXXXX")
nfcapd_pid=
cleanup() {
	if [ -n "$nfcapd_pid" ] && kill -0 "$nfcapd_pid" 2>/dev/null; then
		kill "$nfcapd_pid" 2>/dev/null || true
		wait "$nfcapd_pid" 2>/dev/null || true
	fi
	if [ "$keep" = 1 ]; then
		echo "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

avail_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
need_kb=$((packets * 700 / 1024 + 500000))
if [ "$avail_kb" -lt "$need_kb" ]; then
	echo "need about $((need_kb / 1024)) MiB free in $work, have $((avail_kb / 1024))" >&2
	exit 1
fi

log() { printf '== %s\n' "$*" >&2; }

# measure NAME CMD...: runs CMD bounded by STEP_TIMEOUT, records wall and
# user+sys seconds (of CMD and every child it waited for) in $work/NAME.time.
measure() {
	local name=$1
	shift
	if ! /usr/bin/time -f '%e %U %S' -o "$work/$name.time" timeout "$STEP_TIMEOUT" "$@"; then
		echo "$name failed or timed out (${STEP_TIMEOUT}s): $*" >&2
		[ -f "$work/$name.log" ] && tail -20 "$work/$name.log" >&2
		exit 1
	fi
}
wall() { awk '{printf "%.2f", $1}' "$work/$1.time"; }
cpu() { awk '{printf "%.2f", $2 + $3}' "$work/$1.time"; }

log "building vigil and gencap"
"$GO" build -o "$work/vigil" ./cmd/vigil
"$GO" build -o "$work/gencap" ./test/captures/cmd/gencap

cap=$work/large.pcap
log "generating $packets packets in $flows conversations (seed $seed)"
timeout "$STEP_TIMEOUT" "$work/gencap" -o "$cap" -packets "$packets" -flows "$flows" -seed "$seed" >"$work/gencap.json"
cat "$work/gencap.json" >&2
ls -l "$cap" >&2
cat "$cap" >/dev/null # into the page cache: every tool reads from memory

# tshark: the truth. conv,tcp and conv,udp give conversations (both
# directions in one row: "<-" is B to A, "->" A to B), io,stat the total
# frames and bytes.
log "tshark"
measure tshark sh -c 'exec tshark -r "$1" -n -q -z conv,tcp -z conv,udp -z io,stat,0 >"$2" 2>"$3"' sh "$cap" "$work/tshark.txt" "$work/tshark.log"
read -r ts_convs ts_keys ts_packets ts_bytes < <(awk '
	/<->/ && NF == 14 { convs++; if ($4 > 0) keys++; if ($7 > 0) keys++ }
	$1 == "|" && $3 == "<>" && NF == 9 { packets += $6; bytes += $8 }
	END { print convs + 0, keys + 0, packets + 0, bytes + 0 }' "$work/tshark.txt")

# vigil replay: every packet, records to a file (counted afterwards).
# The peers only meter flows, so vigil runs no detection here; the
# vigil-detect row below is the same replay with the built-in rule pack.
log "vigil replay"
measure vigil "$work/vigil" replay --no-detect --sample-rate 1 --flows-out "$work/vigil.jsonl" "$cap" 2>"$work/vigil.log"
read -r vg_records vg_keys vg_packets vg_bytes < <(awk '
	/"kind":"flow"/ {
		records++
		key = ""
		n = split("src_addr dst_addr src_port dst_port proto", f, " ")
		for (i = 1; i <= n; i++) {
			if (match($0, "\"" f[i] "\":[^,}]*")) key = key substr($0, RSTART, RLENGTH)
		}
		if (!(key in seen)) { seen[key] = 1; keys++ }
		match($0, /"packets":[0-9]+/); packets += substr($0, RSTART + 10, RLENGTH - 10)
		match($0, /"bytes":[0-9]+/); bytes += substr($0, RSTART + 8, RLENGTH - 8)
	}
	END { print records + 0, keys + 0, packets + 0, bytes + 0 }' "$work/vigil.jsonl")
log "vigil replay with detection (the built-in rule pack)"
measure vigil-detect "$work/vigil" replay --sample-rate 1 --flows-out "$work/vigil-detect.jsonl" "$cap" 2>"$work/vigil-detect.log"
vd_records=$(grep -c '"kind":"flow"' "$work/vigil-detect.jsonl" || true)
vd_alerts=$(grep -c '"kind":"alert"' "$work/vigil-detect.jsonl" || true)
vg_reasons=$(grep -o '"end_reason":"[a-z_]*"' "$work/vigil.jsonl" | sort | uniq -c | awk '{sub(/.*:/, "", $2); gsub(/"/, "", $2); printf "%s %s, ", $2, $1}')

# softflowd: NetFlow v9 to an nfcapd on loopback; its records counted with
# nfdump. -c none: no control socket (softflowd 1.1.0 blocks in accept()
# on it when reading a file); -m: room for every flow, so none is
# force-expired; -6: IPv6 too.
# start_nfcapd DIR: an nfcapd on a free loopback port; sets port, nfcapd_pid.
start_nfcapd() {
	mkdir -p "$1"
	for try in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		nfcapd -w "$1" -b 127.0.0.1 -p "$port" -B 16777216 >"$1.log" 2>&1 &
		nfcapd_pid=$!
		sleep 1
		if kill -0 "$nfcapd_pid" 2>/dev/null; then return; fi
		nfcapd_pid=
	done
	echo "nfcapd would not start:" >&2
	cat "$1.log" >&2
	exit 1
}
stop_nfcapd() {
	sleep 1
	kill "$nfcapd_pid"
	wait "$nfcapd_pid" 2>/dev/null || true
	nfcapd_pid=
}
# nf_totals DIR: records packets bytes keys as nfdump reads them.
nf_totals() {
	nfdump -R "$1" -I | awk -F': ' '
		$1 == "Flows" { f = $2 } $1 == "Packets" { p = $2 } $1 == "Bytes" { b = $2 }
		END { printf "%d %d %d ", f, p, b }'
	nfdump -R "$1" -q -A proto,srcip,srcport,dstip,dstport -o 'fmt:%pr %sa %sp %da %dp' | wc -l
}

log "softflowd -> nfcapd on 127.0.0.1"
start_nfcapd "$work/nfcap"
measure softflowd softflowd -d -c none -p "$work/softflowd.pid" -r "$cap" -v 9 -6 -m $((flows * 4 + 1000)) -n "127.0.0.1:$port" >"$work/softflowd.log" 2>&1
stop_nfcapd
read -r sf_records sf_packets sf_bytes sf_keys < <(nf_totals "$work/nfcap")
sf_own=$(grep -E '^(Packets processed|Flows exported):' "$work/softflowd.log" | tr '\n' ' ')

# vigil replay exporting IPFIX over UDP (through its spool) to an nfcapd,
# as softflowd does with NetFlow v9: the same collector reads both.
log "vigil replay -> IPFIX -> nfcapd on 127.0.0.1"
start_nfcapd "$work/nfcap-vigil"
printf 'flows: {output: ""}\nexport:\n  spool: {dir: %s}\n  ipfix: [{address: "127.0.0.1:%s", transport: udp}]\n' "$work/spool" "$port" >"$work/vigil-ipfix.yaml"
measure vigil-ipfix "$work/vigil" replay --no-detect --flows-out "" --config "$work/vigil-ipfix.yaml" --sample-rate 1 "$cap" 2>"$work/vigil-ipfix.log"
stop_nfcapd
read -r vi_records vi_packets vi_bytes vi_keys < <(nf_totals "$work/nfcap-vigil")

# pmacctd: print plugin, one line per unidirectional 5-tuple, written at
# the end (the refresh time is longer than the run); a cache with room
# for every key and a pipe large enough that the core drops nothing.
log "pmacctd"
cat >"$work/pmacctd.conf" <<EOF
daemonize: false
pcap_savefile: $cap
plugins: print
aggregate: src_host,dst_host,src_port,dst_port,proto
print_output: csv
print_output_file: $work/pmacctd.csv
print_refresh_time: 86400
print_cache_entries: $((flows * 2 + 3))
plugin_buffer_size: 102400
plugin_pipe_size: 102400000
EOF
measure pmacctd pmacctd -f "$work/pmacctd.conf" >"$work/pmacctd.log" 2>&1
read -r pm_records pm_keys pm_packets pm_bytes < <(awk -F, '
	NR > 1 { records++; k = $1 FS $2 FS $3 FS $4 FS $5; if (!(k in seen)) { seen[k] = 1; keys++ }
		packets += $6; bytes += $7 }
	END { print records + 0, keys + 0, packets + 0, bytes + 0 }' "$work/pmacctd.csv")

printf '\n%-10s %8s %8s %9s %9s %10s %12s\n' tool wall_s cpu_s flows keys packets bytes
printf '%-10s %8s %8s %9s %9s %10s %12s\n' tshark "$(wall tshark)" "$(cpu tshark)" "$ts_convs" "$ts_keys" "$ts_packets" "$ts_bytes"
printf '%-10s %8s %8s %9s %9s %10s %12s\n' vigil "$(wall vigil)" "$(cpu vigil)" "$vg_records" "$vg_keys" "$vg_packets" "$vg_bytes"
printf '%-10s %8s %8s %9s %9s %10s %12s\n' vigil-detect "$(wall vigil-detect)" "$(cpu vigil-detect)" "$vd_records" "-" "-" "-"
printf '%-10s %8s %8s %9s %9s %10s %12s\n' vigil-ipfix "$(wall vigil-ipfix)" "$(cpu vigil-ipfix)" "$vi_records" "$vi_keys" "$vi_packets" "$vi_bytes"
printf '%-10s %8s %8s %9s %9s %10s %12s\n' softflowd "$(wall softflowd)" "$(cpu softflowd)" "$sf_records" "$sf_keys" "$sf_packets" "$sf_bytes"
printf '%-10s %8s %8s %9s %9s %10s %12s\n' pmacctd "$(wall pmacctd)" "$(cpu pmacctd)" "$pm_records" "$pm_keys" "$pm_packets" "$pm_bytes"
cat <<EOF

flows: what each tool wrote. tshark: conversations (both directions in
one). vigil: unidirectional records, long flows cut by the active (60 s)
and idle (15 s) timeouts in capture time, and at FIN/RST. softflowd:
NetFlow records, one per direction of each bidirectional flow; its expiry
scan runs on the wall clock (every 60 s), which a run this short never
reaches, so every flow ends at EOF, unsliced.
vigil-detect: the same replay with the built-in detection rules on;
its records counted, and its alert reports: $vd_alerts.
vigil-ipfix: the same records as vigil, exported as IPFIX over UDP and
read back by nfcapd/nfdump (like softflowd's).
pmacctd: one line per unidirectional 5-tuple for the whole run.
keys: distinct unidirectional 5-tuples among the flows; equal for all.
bytes: vigil and tshark count frames (Ethernet header included),
softflowd the frame less its 14-byte Ethernet header, pmacctd the IP
total length (no Ethernet header, no padding of short frames).
wall: pmacctd sleeps 2 s before reading a file and paces its reading
with 1 ms sleeps (by design), so its wall time is mostly waiting.
vigil's records by end reason: ${vg_reasons%, }
softflowd's own count: $sf_own
EOF

status=0
for t in vg vi sf pm; do
	eval "p=\$${t}_packets k=\$${t}_keys"
	if [ "$p" != "$ts_packets" ]; then
		echo "FAIL: $t counted $p packets, tshark $ts_packets" >&2
		status=1
	fi
	if [ "$k" != "$ts_keys" ]; then
		echo "FAIL: $t has $k distinct 5-tuples, tshark $ts_keys" >&2
		status=1
	fi
done
exit $status
