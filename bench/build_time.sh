#!/usr/bin/env bash
# Debug rebuild time after editing one DocType: for the example application, and for a generated
# application with many DocTypes (tests/fixture-app pointed at generated TOML). Prints wall-clock
# and CPU seconds. Usage: bench/build_time.sh [N_DOCTYPES (default 300)]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-300}"
work=$(mktemp -d /tmp/m-build-time.XXXXXX)
trap 'rm -rf "$work"' EXIT
TIMEFORMAT="%R %U %S"

measure() { # label, then the command
  local label=$1; shift
  local t
  t=$( { time "$@" >/dev/null 2>&1; } 2>&1 )
  read -r wall user sys <<<"$t"
  printf '| %s | %.1f s | %.1f s |\n' "$label" "$wall" "$(awk -v u="$user" -v s="$sys" "BEGIN{print u+s}")"
}

echo "| rebuild | wall | CPU (user+sys) |"
echo "|---|---|---|"

# Example application: edit Customer (add a field).
cp -r doctypes "$work/example"
M_DOCTYPES_DIR="$work/example" cargo build -q -p m
printf '\n[fields.phone]\ntype = "Phone"\n' >> "$work/example/customer.toml"
measure "example app (4 DocTypes): add a field to Customer" env M_DOCTYPES_DIR="$work/example" cargo build -q -p m
# Leave the example built from its own doctypes/ again.
cargo build -q -p m

# Generated application: N DocTypes of 12 fields each (every third one Links to the previous).
mkdir -p "$work/many"
python3 - "$work/many" "$N" <<'PY'
import sys
out, n = sys.argv[1], int(sys.argv[2])
types = ["Data", "Int", "Float", "Currency", "Check", "Date", "Datetime", "Select", "Text", "Email", "BigInt"]
for i in range(n):
    lines = [f'name = "Thing {i:04d}"', 'naming = "hash"', ""]
    for j, t in enumerate(types):
        lines += [f"[fields.f{j}]", f'type = "{t}"']
        if t == "Select":
            lines.append('options = ["A", "B", "C"]')
        lines.append("")
    if i % 3 == 2:
        lines += ["[fields.parent_thing]", 'type = "Link"', f'to = "Thing {i - 1:04d}"', ""]
    else:
        lines += ["[fields.note]", 'type = "Data"', ""]
    lines += ["[permissions]", '"Worker" = { read = true, create = true, write = true, if_owner = true }', ""]
    open(f"{out}/thing_{i:04d}.toml", "w").write("\n".join(lines))
PY
M_DOCTYPES_DIR="$work/many" cargo build -q -p m-fixture-app
sed -i 's/type = "Text"/type = "Text"\nrequired = true/' "$work/many/thing_0007.toml"
measure "generated app ($N DocTypes): edit one DocType" env M_DOCTYPES_DIR="$work/many" cargo build -q -p m-fixture-app
printf 'name = "Extra Thing"\n\n[fields.title]\ntype = "Data"\n' > "$work/many/zz_extra.toml"
measure "generated app: add DocType $((N + 1))" env M_DOCTYPES_DIR="$work/many" cargo build -q -p m-fixture-app
cargo build -q -p m-fixture-app
