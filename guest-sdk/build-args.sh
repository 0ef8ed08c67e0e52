# Sourced by the C and Go SDKs' build.sh: reads `[-w world] -o out.wasm source [more ...]` into $world, $out and the
# positional sources. The world is -w's, else the one the first source names in a comment (world `mapper-udf`).
# $usage is the line shown for wrong arguments.
world="" out=""
while getopts "w:o:" opt; do
  case "$opt" in
    w) world="$OPTARG" ;;
    o) out="$OPTARG" ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] && [ -n "$out" ] || { echo "usage: $usage" >&2; exit 2; }
if [ -z "$world" ]; then
  world="$(grep -o -m1 'world `[a-z-]*`' "$1" | tr -d '`' | cut -d' ' -f2 || true)"
  [ -n "$world" ] || { echo "$1 names no world (world \`mapper-udf\`), and no -w was given" >&2; exit 2; }
fi
case "$world" in
  mapper-udf | filter-udf | flat-mapper-udf | key-selector-udf | timestamp-assigner-udf | processor-udf | \
    aggregator-udf | reducer-udf | window-processor-udf) ;;
  *) echo "unknown world \`$world\` (wit/udf.wit lists them)" >&2; exit 2 ;;
esac
