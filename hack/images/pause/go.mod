module k8slab.dev/images/pause

go 1.25.0
