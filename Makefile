# Two commands on a fresh machine: `make setup`, then `make all`. Tests: `make test`.
# `make all` builds the verifier bundle (about 45 minutes on 2 cores); PROFILE=cpu-full trains a
# whole epoch.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
RUN    ?= artifacts/default
# Debian/Ubuntu packages Qt needs on a bare machine: offscreen, and in a real X11 window the xcb
# platform plugin's libraries (`ldd .../PySide6/Qt/plugins/platforms/libqxcb.so`); xvfb and xdotool
# run the app in a real X server for tests/test_desktop_xcb.py.
QT_APT := libgl1 libegl1 libglib2.0-0 libfontconfig1 libfreetype6 libx11-6 libxkbcommon0 \
          libdbus-1-3 fonts-dejavu-core libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-glx0 libxcb-icccm4 \
          libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 \
          libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 \
          xvfb xdotool

.PHONY: setup system-deps all data verifier train export serve embedded-bundle benchmark publish clean test app baselines accuracy quantization package

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

setup: $(PY)
	# CPU torch first, so nothing later pulls a multi-GB CUDA build on a CPU machine.
	$(PIP) install torch==2.13.0
	# llama-cpp-python compiles (about 10 minutes on 2 cores); pip caches the built wheel.
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(PIP) install -c constraints.txt -e ".[app,build,dev]"
	$(PY) -m models.codeset E11.9 > /dev/null  # compile the code-set cache once
	$(PY) -m builder.llama_cpp_tools > /dev/null  # llama.cpp's HF->GGUF converter, same commit as the runtime
	@echo "Set-up done. Qt on a bare Debian/Ubuntu also needs: $(QT_APT) (make system-deps)"

system-deps:  # apt packages for Qt; needs root
	@missing=$$(for p in $(QT_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi

PROFILE ?= cpu-default
all: $(PY)
	$(PY) -m builder all --profile $(PROFILE) --run-dir $(RUN)

data: $(PY)
	$(PY) -m builder data --run-dir $(RUN)

verifier: $(PY)
	$(PY) -m builder verifier --profile $(PROFILE) --run-dir $(RUN)

train: $(PY)  # the generative model (model_kind=generative)
	$(PY) -m builder train --profile cpu-default --run-dir $(RUN) --set model_kind=generative

export: $(PY)
	$(PY) -m builder export --run-dir $(RUN)

# make serve [model=gguf|onnx|safetensors|retrieval]: the run's bundle over HTTP on 127.0.0.1:8321
model ?= bundle
serve: $(PY)
	$(PY) -m builder serve --run-dir $(RUN) --model $(model)

# The retrieval-only bundle the package ships (models/resources/bundle): the ranker refitted on
# CodiEsp train, every choice out of fold.
embedded-bundle: $(PY)
	$(PY) -m builder retriever --run-dir artifacts/embedded
	$(PY) -m builder bundle --run-dir artifacts/embedded --retrieval-only --out models/resources/bundle

benchmark: $(PY)
	$(PY) -m builder benchmark --run-dir $(RUN)

# make package [BUNDLE=DIR] [MODEL=Q8_0 | NO_MODEL=1]: dist/icd10-coder/ and its .tar.gz, self-tested
package: $(PY)
	$(PY) packaging/build_app.py $(if $(BUNDLE),--bundle $(BUNDLE)) $(if $(MODEL),--model $(MODEL)) $(if $(NO_MODEL),--no-model)

# make publish repo=USER/NAME [dry=1]: the run's models and model card on the Hugging Face Hub
publish: $(PY)
	$(PY) -m builder publish --run-dir $(RUN) --repo-id $(repo) $(if $(dry),--dry-run)

# Retrieval alone and the base model (generative, with and without candidates), on CodiEsp dev
# and synthetic validation.
baselines: $(PY)
	for data in codiesp:builder/corpora/codiesp/dev synthetic-val; do \
	  $(PY) -m builder evaluate --run-dir $(RUN) --data $$data --system retrieval && \
	  $(PY) -m builder evaluate --run-dir $(RUN) --data $$data --system base --no-candidates --max-tokens 96 && \
	  $(PY) -m builder evaluate --run-dir $(RUN) --data $$data --system base --max-tokens 96 || exit 1; \
	done
	$(PY) -m builder report --run-dir $(RUN)

# README "Accuracy": retrieval alone and the verifier over the ranker (the bundle's Q4_K_M GGUF;
# the bundle's default system is one of the two), on every CodiEsp dev note, the clinic notes and
# the synthetic validation notes; all held out from the bundle's choices.
accuracy: $(PY)
	for data in codiesp:builder/corpora/codiesp/dev clinic synthetic-val; do \
	  $(PY) -m builder evaluate --run-dir $(RUN) --data $$data --system retrieval && \
	  $(PY) -m builder evaluate --run-dir $(RUN) --data $$data --system gguf || exit 1; \
	done
	$(PY) -m builder report --run-dir $(RUN)

# The generative model's exports (a run built with --set model_kind=generative): accuracy, size
# and speed of every export against the merged model (first 100 CodiEsp dev notes, answers
# capped at 96 tokens, one model at a time).
QUANT_NOTES ?= 100
quantization: $(PY)
	$(PY) -m builder export --run-dir $(RUN) --quantize F16,Q8_0,Q5_K_M,Q4_K_M,Q2_K
	for m in $(RUN)/merged $(RUN)/onnx/fp32 $(RUN)/onnx/int8 \
	         $(foreach q,F16 Q8_0 Q5_K_M Q4_K_M Q2_K,$(RUN)/gguf/icd10-coder-$(q).gguf); do \
	  $(PY) -m builder evaluate --run-dir $(RUN) --model $$m --limit $(QUANT_NOTES) --max-tokens 96 --threads 2 \
	    --out $(RUN)/eval-quant/$$(basename $$(dirname $$m))-$$(basename $$m) || exit 1; \
	done
	$(PY) -m builder report --run-dir $(RUN) --eval-dir $(RUN)/eval-quant

app: $(PY)
	$(PY) -m desktop

test: $(PY)
	$(PY) -m ruff check .
	QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q

clean:
	rm -rf artifacts build dist .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
