.PHONY: krew krew-relock

# One self-contained archive per platform in dist/krew/, and their sha256 in krew/svcnet.yaml.
krew:
	python3 tools/build_krew.py

# Re-resolve the dependencies for every platform and CPython into krew/wheels.lock, then build.
krew-relock:
	python3 tools/build_krew.py --relock

.PHONY: lab-demo
lab-demo:  ## build the lab (root) and watch trace answer from three SSH-reached nodes
	python3 tools/lab_demo.py
