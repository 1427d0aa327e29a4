# Shared by the bench/peers/* scripts: sourced, not run.
#
# Conventions (docs/performance.md, "The accounts"): domain bench.test,
# accounts u0..u{N-1} with password "bench-pw", the first C*S accounts in
# cliques of S mutual contacts, one self-signed certificate for every
# server, STARTTLS required, each server with its own PostgreSQL.

BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
BENCH_DOMAIN=${BENCH_DOMAIN:-bench.test}
BENCH_PASSWORD=bench-pw
# One salt for every account we write ourselves, so the load generator
# derives SaltedPassword once instead of once per login (the server's
# work per login does not depend on it).
BENCH_SALT_B64=YmVuY2gtc2FsdC0wMDAx
BENCH_ITERATIONS=4096
PG_CLUSTER="$BENCH_REPO/tools/pg-cluster"

die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

note() {
	echo "${0##*/}: $*" >&2
}

# bench_cert DIR: make DIR/cert/bench.test.{key,crt,pem} once (ECDSA P-256,
# self-signed, ten years); world-readable so the servers' users can read it.
bench_cert() {
	local dir=$1/cert
	[ -f "$dir/$BENCH_DOMAIN.pem" ] && return 0
	mkdir -p "$dir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/$BENCH_DOMAIN.key" -out "$dir/$BENCH_DOMAIN.crt" -days 3650 \
		-subj "/CN=$BENCH_DOMAIN" -addext "subjectAltName=DNS:$BENCH_DOMAIN" \
		>/dev/null 2>&1 || die "openssl could not make the certificate"
	cat "$dir/$BENCH_DOMAIN.crt" "$dir/$BENCH_DOMAIN.key" >"$dir/$BENCH_DOMAIN.pem"
	chmod 755 "$1" "$dir"
	chmod 644 "$dir"/*
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT.
wait_port() {
	local port=$1 left=${2:-60}
	while [ "$left" -gt 0 ]; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.5
		left=$((left - 1))
	done
	return 1
}

# apt_ensure PACKAGE...: install what is missing without starting the
# distribution's own services (policy-rc.d refuses every start).
apt_ensure() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	note "installing ${missing[*]}"
	local had_policy=0
	[ -e /usr/sbin/policy-rc.d ] && had_policy=1
	if [ $had_policy = 0 ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
	local rc=$?
	[ $had_policy = 0 ] && rm -f /usr/sbin/policy-rc.d
	[ $rc = 0 ] || die "apt-get install ${missing[*]} failed"
}

# pids_of_pidfile FILE: the pid in FILE when that process runs.
pid_alive() {
	[ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null
}

# json_pids PID...: a JSON array of numbers.
json_pids() {
	local out= p
	for p in "$@"; do
		out="$out${out:+,}$p"
	done
	printf '[%s]' "$out"
}

# parse_start_args "$@": sets PORT USERS CLIQUES CLIQUE_SIZE.
parse_start_args() {
	PORT=5222 USERS=1000 CLIQUES=0 CLIQUE_SIZE=101
	while [ $# -gt 0 ]; do
		case $1 in
		--port) PORT=$2; shift 2 ;;
		--users) USERS=$2; shift 2 ;;
		--cliques) CLIQUES=$2; shift 2 ;;
		--clique-size) CLIQUE_SIZE=$2; shift 2 ;;
		*) die "unknown option $1" ;;
		esac
	done
	[ $((CLIQUES * CLIQUE_SIZE)) -le "$USERS" ] || die "--cliques * --clique-size exceeds --users"
}

# The SQL that lists every (owner, contact) pair of the cliques, as
# "SELECT o, c FROM ..." with o and c account indices; servers wrap it.
clique_pairs_sql() {
	cat <<SQL
SELECT o, c FROM generate_series(0, $((CLIQUES * CLIQUE_SIZE)) - 1) AS o,
	generate_series(0, $CLIQUE_SIZE - 1) AS k,
	LATERAL (SELECT (o / $CLIQUE_SIZE) * $CLIQUE_SIZE + k AS c) AS x
WHERE c <> o
SQL
}

# pg_pids PGDIR: the PostgreSQL processes of the tools/pg-cluster cluster in
# PGDIR (the postmaster and its children), one per line; nothing when it
# does not run.
pg_pids() {
	local pm
	pm=$("$PG_CLUSTER" pid "$1" 2>/dev/null) || return 0
	pid_alive "$pm" || return 0
	echo "$pm"
	pgrep -P "$pm" || true
}

# kill_wait SECONDS PID...: SIGTERM the PIDs that run, wait up to SECONDS
# for them to exit, then SIGKILL what is left.
kill_wait() {
	local left=$(($1 * 10)) p alive
	shift
	for p in "$@"; do
		pid_alive "$p" && kill -TERM "$p" 2>/dev/null
	done
	while [ "$left" -gt 0 ]; do
		alive=0
		for p in "$@"; do
			pid_alive "$p" && alive=1
		done
		[ $alive = 0 ] && return 0
		sleep 0.1
		left=$((left - 1))
	done
	for p in "$@"; do
		pid_alive "$p" && kill -KILL "$p" 2>/dev/null
	done
	return 0
}
