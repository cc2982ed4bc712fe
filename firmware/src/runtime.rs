//! The unwinding stubs the prebuilt `core` references (the memory functions come from the
//! `freestanding` crate), and the heap.

use firmware::layout;
use freestanding as _;
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Only the disk path allocates; `-kernel` boots never touch the heap.
pub fn init_heap() {
    // SAFETY: the heap area of layout.rs, low RAM that nothing else uses before the hand-off;
    // called once.
    unsafe { HEAP.lock().init(layout::HEAP as *mut u8, layout::HEAP_SIZE) }
}

/// Referenced by the prebuilt `core`; never reached with `panic = "abort"`.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    firmware::arch::halt_forever()
}

#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
