module k8slab.dev/bench/goserver

go 1.22
