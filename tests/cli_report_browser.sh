#!/usr/bin/env bash
# report.html in a real browser: headless Chromium loads a copy of the page with a checker script
# appended, which measures every figure's SVG box and records console errors into the DOM; the
# dumped DOM must show every figure rendered with a non-empty box and no error. A screenshot of
# the page is kept as report-screenshot.png in the test's build directory. Usage: $0 VLM4REC
set -euo pipefail
bin=$1
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "SKIP: no chromium (install Debian's chromium: scripts/deps.sh test)"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export VLM4REC_LOG=warn
"$bin" dataset synth -o "$tmp/cat" --users 200 --items 300 --interactions 1600 --seed 3 >/dev/null
"$bin" eval --dataset "$tmp/cat" --covered covered.txt --model 'title <b>=features/title.npy' \
  --model description=features/description.npy --model 'visual & co=features/visual.npy' \
  --bootstrap 100 -q -o "$tmp/cov.json" >/dev/null
"$bin" eval --dataset "$tmp/cat" --model 'title <b>=features/title.npy' \
  --model description=features/description.npy --bootstrap 100 -q -o "$tmp/full.json" >/dev/null
"$bin" report "$tmp/cov.json" "$tmp/full.json" -o "$tmp/rep" >/dev/null
figures=$(grep -c '<svg class=' "$tmp/rep/report.html")
[ "$figures" -ge 7 ] || { echo "FAIL: only $figures figures in report.html"; exit 1; }
# the checker: one line per figure, "FIG class width height children", and the console errors
cp "$tmp/rep/report.html" "$tmp/check.html"
cat >> "$tmp/check.html" <<'JS'
<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
(function () {
  var out = [];
  document.querySelectorAll('svg').forEach(function (s) {
    var r = s.getBoundingClientRect(), b = s.getBBox();
    out.push('FIG ' + s.getAttribute('class') + ' ' + Math.round(r.width) + ' ' + Math.round(r.height) + ' ' +
             Math.round(b.width) + ' ' + s.querySelectorAll('rect,line,path,polyline,circle,text').length);
  });
  var pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = '\n' + out.join('\n') + '\nERRORS ' + window.__errors.length + '\nEND';
  document.body.appendChild(pre);
})();
</script>
JS
flags=(--headless --disable-gpu --no-sandbox --no-first-run --disable-extensions --user-data-dir="$tmp/profile")
timeout 120 "$browser" "${flags[@]}" --enable-logging=stderr --v=0 --dump-dom "file://$tmp/check.html" \
  > "$tmp/dom.html" 2> "$tmp/console.log" || { echo "FAIL: chromium exited $?"; tail -20 "$tmp/console.log"; exit 1; }
grep -q '^END' "$tmp/dom.html" || { echo "FAIL: the checker did not run"; tail -20 "$tmp/console.log"; exit 1; }
if grep -E 'CONSOLE.*(Uncaught|Error|error)' "$tmp/console.log"; then echo "FAIL: console errors"; exit 1; fi
grep -q '^ERRORS 0$' "$tmp/dom.html" || { echo "FAIL: page errors"; grep ERRORS "$tmp/dom.html"; exit 1; }
n=0
while read -r _ cls w h bw items; do
  n=$((n + 1))
  if [ "$w" -le 0 ] || [ "$h" -le 0 ] || [ "$bw" -le 0 ] || [ "$items" -lt 3 ]; then
    echo "FAIL: figure $cls rendered empty ($w x $h, content width $bw, $items shapes)"; exit 1
  fi
done < <(grep '^FIG ' "$tmp/dom.html")
[ "$n" -eq "$figures" ] || { echo "FAIL: $n of $figures figures measured"; exit 1; }
# the page as it is (no checker) as a build artifact
timeout 120 "$browser" "${flags[@]}" --hide-scrollbars --window-size=1280,3000 \
  --screenshot="$PWD/report-screenshot.png" "file://$tmp/rep/report.html" >/dev/null 2>&1
[ -s "$PWD/report-screenshot.png" ] || { echo "FAIL: no screenshot"; exit 1; }
echo "ok: $n figures rendered, no console errors; screenshot $PWD/report-screenshot.png"
