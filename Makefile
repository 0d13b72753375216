# make daily   run the daily suite against the embedded demo environment, ending with the daily gate's verdict
# make test    run opsgate's own tests
# make bench   run the benchmarks in bench/
.PHONY: daily test bench clean

.venv/.installed: pyproject.toml ci/bootstrap.sh
	bash ci/bootstrap.sh

daily: .venv/.installed
	.venv/bin/pytest checks/daily --gate daily

test: .venv/.installed
	bash ci/run-tests.sh

bench: .venv/.installed
	.venv/bin/python bench/bench_http.py

clean:
	rm -rf .venv src/*.egg-info; find reports -name "*.json" -delete
