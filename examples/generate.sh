#!/usr/bin/env bash
# Regenerates the example service's code with Debian's thrift-compiler (apt-get install thrift-compiler).
# js:node,es6,ts: native Promises (npm thrift 0.24 no longer exports Q) and .d.ts declarations.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf gen-nodejs gen-py
thrift --gen js:node,es6,ts -o . calculator.thrift
thrift --gen py -o . calculator.thrift
# The repository's package.json says "type": "module"; the generated code is CommonJS.
echo '{ "type": "commonjs" }' > gen-nodejs/package.json
