#!/bin/sh
# render SRC OUT: every .md file becomes an .html file ("# x" lines become <h1>x</h1>).
set -e
src=$1
out=$2
find "$src" -name '*.md' | sort | while read -r f; do
	rel=${f#"$src"/}
	dest="$out/${rel%.md}.html"
	mkdir -p "$(dirname "$dest")"
	{
		echo '<!doctype html>'
		sed -e 's|^# \(.*\)|<h1>\1</h1>|' -e 's|^## \(.*\)|<h2>\1</h2>|' "$f"
	} > "$dest"
done
cp "$src/style.css" "$out/style.css"
