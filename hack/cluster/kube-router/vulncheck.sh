#!/usr/bin/env bash
# Checks the kube-router this module builds (and, with --upstream DIR, a
# checkout of kube-router's own tree) with govulncheck against a local copy of
# the Go vulnerability database. vuln.go.dev may be out of reach, so the
# database is made from a checkout of golang/vulndb (its data/osv/*.json):
#   hack/cluster/kube-router/vulncheck.sh /path/to/vulndb [--upstream /path/to/kube-router-v2.1.0]
# Needs govulncheck (go install golang.org/x/vuln/cmd/govulncheck@latest).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vulndb=${1:?usage: $0 VULNDB_CHECKOUT [--upstream KUBE_ROUTER_TREE]}
govulncheck=$(command -v govulncheck || echo "$(go env GOPATH)/bin/govulncheck")
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
mkdir -p "$db/ID" "$db/index"
cp "$vulndb"/data/osv/*.json "$db/ID/"
python3 - "$db" <<'PY'
import glob, json, os, sys
db = sys.argv[1]
mods, newest = {}, "1970-01-01T00:00:00Z"
for f in glob.glob(os.path.join(db, "ID", "*.json")):
    d = json.load(open(f))
    newest = max(newest, d.get("modified", ""))
    for a in d.get("affected", []):
        fixed = [e["fixed"] for r in a.get("ranges", []) for e in r.get("events", []) if "fixed" in e]
        v = {"id": d["id"], "modified": d["modified"]}
        if fixed:
            v["fixed"] = fixed[-1]
        mods.setdefault(a["package"]["name"], []).append(v)
json.dump([{"path": p, "vulns": v} for p, v in sorted(mods.items())], open(os.path.join(db, "index", "modules.json"), "w"))
json.dump({"modified": newest}, open(os.path.join(db, "index", "db.json"), "w"))
PY
status=0
echo "== this build (hack/cluster/kube-router/go.mod)"
( cd "$here" && "$govulncheck" -db "file://$db" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router ) || status=$?
if [ "${2:-}" = --upstream ]; then
  echo "== kube-router as published (${3:?--upstream needs a directory})"
  ( cd "$3" && GOFLAGS=-mod=mod "$govulncheck" -db "file://$db" ./cmd/kube-router ) || true
fi
exit "$status"
