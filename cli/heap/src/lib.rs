//! The `aftercare` command's allocator, and the one setting its batch runs need.
//!
//! `simulate` and `cost` free a customer state's worth of small values per event and allocate
//! as many again. mimalloc (v3) returns memory that stayed free for a second to the OS
//! (`madvise(MADV_DONTNEED)`), and the next allocation there faults it back in: with huge
//! pages, a 2 MiB page zeroed by the kernel each time. On a year of 10k customers that was
//! 0.3–0.4 s of a 2.3–2.8 s run spent zeroing memory, at an unchanged peak (BENCHMARKS.md,
//! simulator, item 86). A batch run ends soon and frees everything then, so it keeps its memory.
//!
//! It also takes its memory in 4 KiB pages rather than 2 MiB transparent huge pages: on the
//! VM the benchmarks run on, the kernel zeroing each fresh 2 MiB page was 12 % of a simulation
//! of 100k customers, and 4 KiB pages took 0.1 % (BENCHMARKS.md, simulator, item 104).

pub use mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e`: libmimalloc-sys declares no
/// constant for it (the test below checks the index against the option's default).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The settings of a batch run (`simulate`, `cost`): [`keep_freed_memory`], [`small_pages`].
pub fn for_a_batch_run() {
    keep_freed_memory();
    small_pages();
}

/// From now on, memory freed is kept for reuse and never returned to the OS. For batch runs
/// only: a long-lived server (`aftercare dev`) should give back what it no longer uses.
pub fn keep_freed_memory() {
    #[allow(unsafe_code)] // mimalloc's C API; it takes any value for any option, at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1)
    }
}

/// From now on, memory touched for the first time comes in 4 KiB pages, not transparent
/// huge pages (Linux; elsewhere nothing changes). mimalloc asks the same of the kernel when
/// `MIMALLOC_ALLOW_THP=0` is set at start.
pub fn small_pages() {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)] // A prctl with integer arguments only; an error leaves the pages as they were.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay() -> std::os::raw::c_long {
        #[allow(unsafe_code)] // As above: reads a number.
        unsafe {
            libmimalloc_sys::mi_option_get(PURGE_DELAY)
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn small_pages_turns_transparent_huge_pages_off_for_the_process() {
        let thp_disabled = || {
            #[allow(unsafe_code)] // As above: reads a flag.
            unsafe {
                libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0)
            }
        };
        // 0, unless whatever started the tests had set it: children inherit the flag.
        let before = thp_disabled();
        small_pages();
        assert_eq!(thp_disabled(), 1, "before: {before}");
    }

    /// One test, not two: the option is process-wide and tests run on threads.
    #[test]
    fn purging_is_on_by_default_and_off_once_asked() {
        // v3's default, 1000 ms, which neither neighbouring option has (1 and 0): the index
        // is the purge delay's. Unless the environment set it for this process.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 1000, "option {PURGE_DELAY} is not mimalloc's purge delay");
        }
        keep_freed_memory();
        assert_eq!(purge_delay(), -1);
    }
}
