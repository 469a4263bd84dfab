module k8slab.dev/tests/testserver

go 1.25.0
