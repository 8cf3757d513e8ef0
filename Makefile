# densereg: set up a fresh machine, run the main job on the bundled sample faces, run the tests.
#
#   make demo    # .venv/ with every dependency (in the order that works), then the sample build + preview
#   make test    # .venv/ if missing, then the whole test suite (what .ci/run calls)
#
# GPU users: make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
# (any pip requirement for a CUDA build of torch; the default is the CPU build).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
OUT    ?= out
STAMP  := $(VENV)/.densereg-installed

.PHONY: demo test setup gl bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# menpo3d builds only without build isolation, against an installed numpy + cython
	$(BIN)/pip install --quiet numpy cython setuptools wheel
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet menpo
	$(BIN)/pip install --quiet --no-build-isolation menpo3d
	# pyrender pins PyOpenGL 3.1.0, which fails with OSMesa: install it alone, then a PyOpenGL that works
	$(BIN)/pip install --quiet --no-deps pyrender==0.1.45
	$(BIN)/pip install --quiet --no-build-isolation -e ".[data,gl,dask,video,test,detect]"
	# the fit benchmark's peer (optional: its tests skip without it)
	-$(BIN)/pip install --quiet eos-py
	-$(MAKE) --no-print-directory gl
	touch $(STAMP)

# Headless OpenGL for the optional pyrender backend (Debian/Ubuntu, as root); skipped elsewhere.
gl:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null) \
		|| echo "note: could not install the OpenGL libraries; the pyrender backend's tests will be skipped"; \
	else echo "note: not root or no apt-get: install libosmesa6 (or libegl1 libegl-mesa0 libgl1-mesa-dri) for the pyrender backend"; fi

demo: $(STAMP)
	$(BIN)/densereg-data build --dataset sample --out $(OUT)/sample-shards --overwrite
	$(BIN)/densereg-data verify $(OUT)/sample-shards
	$(BIN)/densereg-data info $(OUT)/sample-shards
	$(BIN)/densereg-data preview $(OUT)/sample-shards --out $(OUT)/sample-preview.png
	$(BIN)/densereg-data template show --out $(OUT)/template
	@echo "open $(OUT)/sample-preview.png (the labelled sample faces) and $(OUT)/template/"

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	PYOPENGL_PLATFORM=osmesa $(BIN)/python benchmarks/bench_raster.py
	$(BIN)/python benchmarks/bench_fit.py

clean-venv:
	rm -rf $(VENV)
