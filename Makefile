# zerotrain: the two set-up commands are `make run` (the default job) and `make test`.
# Both install missing system packages first (scripts/ensure-deps.sh).

CARGO   ?= cargo
NP      ?= 2
BIN     := target/release/zerotrain
# OpenMPI refuses to run as root without these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
MPIRUN  ?= mpirun --oversubscribe -np $(NP)

.PHONY: deps build run test bench clean

deps:
	@scripts/ensure-deps.sh

build: deps
	$(CARGO) build --release

run: build
	$(MPIRUN) $(BIN) bench comm

test:
	@scripts/ensure-deps.sh --python
	$(CARGO) build --features cuda
	$(CARGO) test --release -- --test-threads=2

bench: build
	@scripts/ensure-deps.sh --python
	scripts/bench.sh

clean:
	$(CARGO) clean
