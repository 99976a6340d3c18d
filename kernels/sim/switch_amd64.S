// Fiber context switch for the cudasim runtime (x86-64 System V). runtime.cpp uses it instead of
// swapcontext, which costs a rt_sigprocmask syscall per switch (~280 ns vs ~10 ns here).
//
// void cudasim_ctx_switch(void** save_sp, void* load_sp)
//   Pushes the callee-saved registers of the current context (rbp, rbx, r12-r15), stores rsp in
//   *save_sp, loads load_sp and pops the same frame from there. Caller-saved registers need no saving:
//   this is a function call. MXCSR and the x87 control word are not switched (saving them costs ~6 ns
//   per switch here): all fibers of a worker share one floating-point environment, and kernels never
//   change it.
//
// cudasim_ctx_entry
//   First "return address" of a new fiber (frame built by init_fiber_context in runtime.cpp): calls
//   r13(r12) = cudasim_fiber_main(fiber), which never returns. Marked as the outermost frame so that
//   unwinders (gdb, ASan's stack traces) stop here.
#if defined(__x86_64__) && defined(__ELF__)
	.text
	.globl	cudasim_ctx_switch
	.hidden	cudasim_ctx_switch
	.type	cudasim_ctx_switch, @function
	.p2align 4
cudasim_ctx_switch:
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.size	cudasim_ctx_switch, .-cudasim_ctx_switch

	.globl	cudasim_ctx_entry
	.hidden	cudasim_ctx_entry
	.type	cudasim_ctx_entry, @function
	.p2align 4
cudasim_ctx_entry:
	.cfi_startproc
	.cfi_undefined rip
	movq	%r12, %rdi
	xorl	%ebp, %ebp
	callq	*%r13
	ud2
	.cfi_endproc
	.size	cudasim_ctx_entry, .-cudasim_ctx_entry
#endif

#if defined(__ELF__)
	.section .note.GNU-stack,"",@progbits
#endif
