//! C's `pow`, defined in the bootstrap itself instead of taken from glibc's libm.
//!
//! `pow` is the only libm function the three Lambdas call (the AWS SDK's adaptive retry rate
//! limiter raises to a power with `f64::powf`), and for it every cold start loaded `libm.so.6`:
//! opened, mapped, relocated, about 9 page faults and 0.1 ms before the first poll
//! (BENCHMARKS.md, cold start, item 59). Defined here, the linker resolves the call in the
//! binary and, linking as needed, leaves libm out. The body is the `libm` crate's port of musl's
//! `pow`; the only caller computes a retry rate, where the last bit does not matter.
#![no_std]

/// `double pow(double x, double y)`, as C's `<math.h>` declares it.
#[allow(unsafe_code)] // An exported, unmangled symbol: what the linker resolves `pow` to.
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(test)]
mod tests {
    extern crate std;

    /// Values and IEEE 754's special cases (C11 F.10.4.4) as C's `pow` gives them: in a
    /// bootstrap, every `f64::powf` now lands here instead of in glibc.
    #[test]
    fn pow_answers_as_c_does() {
        let exact = [(2.0, 10.0, 1024.0), (9.0, 0.5, 3.0), (10.0, -2.0, 0.01), (1.5, 0.0, 1.0), (1.0, f64::NAN, 1.0), (f64::NAN, 0.0, 1.0), (0.0, -1.0, f64::INFINITY), (-2.0, 3.0, -8.0), (f64::INFINITY, -1.0, 0.0)];
        for (x, y, expected) in exact {
            assert_eq!(super::pow(x, y), expected, "pow({x}, {y})");
        }
        assert!(super::pow(-8.0, 1.0 / 3.0).is_nan(), "a negative base to a fractional power is NaN");
        let cube = super::pow(0.7, 3.0);
        assert!((cube - 0.343).abs() < 1e-15, "pow(0.7, 3) = {cube}");
    }
}
