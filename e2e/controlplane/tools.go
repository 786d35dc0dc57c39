//go:build tools

// Package tools pins the main packages that build.sh compiles, so that `go mod tidy`
// keeps them (and everything they import) in go.mod and go.sum. The build tag keeps
// this file out of every real build: it is never compiled.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"            // etcd (package main calling etcdmain.Main)
	_ "helm.sh/helm/v3/cmd/helm"             // helm
	_ "k8s.io/kubernetes/cmd/kube-apiserver" // kube-apiserver
	_ "k8s.io/kubernetes/cmd/kubectl"        // kubectl

	// The node tier (e2e/node/build.sh): a real kubelet and the controllers that make a
	// single-node cluster, built from the same k8s.io/kubernetes version.
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
