// Package vmath holds the vector (SIMD) kernels of the CPU backend, in Go assembly. It
// is a package of its own because engine/cpu uses cgo in OpenBLAS builds, and a cgo
// package cannot contain Go assembly.
//
// Every kernel has a pure-Go equivalent in engine/cpu that it is tested against; callers
// check Have* before calling.
package vmath
