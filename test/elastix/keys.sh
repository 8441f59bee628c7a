# Sourced by the elastix test scripts.
# params_with_keys PARAMS "KEY LINES" OUT: PARAMS with the KEY LINES replacing the lines of the
# same keys (and the metric line, which every key set names), written to OUT.
params_with_keys() {
  local params=$1 keys=$2 out=$3 drop
  drop=$(printf '%s\n' "$keys" | sed -nE 's/^\(([A-Za-z0-9]+) .*/\1/p' | paste -sd'|')
  { grep -vE "^\((Metric|${drop:-Metric}) " "$params"; printf '%s\n' "$keys"; } > "$out"
}
