# The README's two commands are `make lab` and `make test`; both set everything up first.
.PHONY: setup toolchain lab destroy test lint unit bench

setup:            ## Debian packages, .venv from requirements.lock, pinned toolchain
	bash scripts/setup.sh

toolchain:        ## build/refresh the pinned Pulumi CLI, language host and livekit-server
	bash scripts/toolchain.sh all

lab:              ## set up, then deploy the lab stack (the main job) and print its summary
	bash scripts/lab.sh up

destroy:          ## tear the lab down, leaving nothing behind
	bash scripts/lab.sh down

test:             ## set up, lint, unit tests, then lab up + verification + lab tests + destroy
	bash scripts/test.sh

lint:
	bash scripts/test.sh lint

unit:
	bash scripts/test.sh unit

bench:            ## print timings: toolchain, unit suite, the test OpenStack and acceptance stack, lab, converges
	bash scripts/bench.sh --openstack --lab
