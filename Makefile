# zerotrain: the two set-up commands are `make run` (the default job) and `make test`.
# Both install missing system packages first (scripts/ensure-deps.sh).

CARGO   ?= cargo
BIN     := target/release/zerotrain
# OpenMPI refuses to run as root without these (containers, CI); harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
# Oversubscribed ranks on few cores must yield instead of busy-polling.
export OMPI_MCA_mpi_yield_when_idle := 1
MPIRUN  ?= mpirun --oversubscribe --bind-to none
RUN_DIR := runs/addition

.PHONY: deps build run data test bench clean

deps:
	@scripts/ensure-deps.sh

build: deps
	$(CARGO) build --release

# Sums are written zero-padded and least-significant digit first ("48+39=780"), the
# order in which a model computes them carry by carry; `sample` reads them back.
# The dataset is redone when this Makefile changes, so an older recipe's is not reused.
data/addition/manifest.json: Makefile | build
	rm -rf data/addition
	$(BIN) data synth --task addition --digits 2 --pad --reverse-sum --out data/addition --count 8000 --val-count 1000

data: data/addition/manifest.json

# The default job: a small GPT learns 2-digit addition with ZeRO stage 2 on 2 CPU ranks,
# plots its metrics, and ends with a few greedy answers (wrong ones first) and the
# exact-match accuracy on 1000 held-out sums.
run: build data
	rm -rf $(RUN_DIR)
	$(MPIRUN) -np 2 $(BIN) train --config jobs/configs/addition-cpu.toml
	$(BIN) report $(RUN_DIR)/metrics.jsonl --out $(RUN_DIR)/plots
	$(BIN) sample --checkpoint $(RUN_DIR)/ckpt --data data/addition --eval-addition 1000

test:
	@scripts/ensure-deps.sh --python --slurm
	$(CARGO) build --features cuda
	# No backtraces: CI shows the tail of a failure, which should be its message.
	RUST_BACKTRACE=0 $(CARGO) test --release -- --test-threads=2

bench: build
	@scripts/ensure-deps.sh --python
	scripts/bench.sh

clean:
	$(CARGO) clean
	rm -rf runs
