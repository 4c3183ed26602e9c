//! The arithmetic of `pipeline!`'s `derive { … }` and `emit_when: …`: numbers are
//! `Option<f64>`; a missing value, a division by zero or a result that is not finite is
//! `None`, and a comparison with `None` is false.

/// A row column that derived expressions and `emit_when` can compute with.
#[diagnostic::on_unimplemented(
    message = "a column of type `{Self}` is not a number that `derive` and `emit_when` can compute with",
    label = "not a number",
    note = "expressions compute in f64 over counts, sums, averages, percentiles, … and custom outputs of a number type (or an `Option` of one)"
)]
pub trait Column {
    /// The column's value, `None` when it has none (or it is not finite).
    fn value(&self) -> Option<f64>;
}

macro_rules! number_columns {
    ($($t:ty),*) => {$(
        impl Column for $t {
            #[inline]
            #[allow(clippy::cast_precision_loss, clippy::cast_lossless, reason = "columns compute in f64")]
            fn value(&self) -> Option<f64> {
                finite(*self as f64)
            }
        }
    )*};
}
number_columns!(f64, f32, u64, u32, u16, u8, usize, i64, i32, i16, i8, isize);

impl<T: Column> Column for Option<T> {
    #[inline]
    fn value(&self) -> Option<f64> {
        self.as_ref().and_then(Column::value)
    }
}

#[inline]
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// `a + b`.
#[inline]
pub fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    finite(a? + b?)
}

/// `a - b`.
#[inline]
pub fn sub(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    finite(a? - b?)
}

/// `a * b`.
#[inline]
pub fn mul(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    finite(a? * b?)
}

/// `a / b`: `None` when `b` is zero.
#[inline]
pub fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    if b == 0.0 {
        return None;
    }
    finite(a / b)
}

/// `-a`.
#[inline]
pub fn neg(a: Option<f64>) -> Option<f64> {
    a.map(|v| -v)
}

macro_rules! comparisons {
    ($($name:ident $op:tt $doc:literal),*) => {$(
        #[doc = $doc]
        #[inline]
        pub fn $name(a: Option<f64>, b: Option<f64>) -> bool {
            matches!((a, b), (Some(a), Some(b)) if a $op b)
        }
    )*};
}
comparisons!(
    lt < "`a < b`, false when either has no value.",
    le <= "`a <= b`, false when either has no value.",
    gt > "`a > b`, false when either has no value.",
    ge >= "`a >= b`, false when either has no value.",
    eq == "`a == b`, false when either has no value.",
    ne != "`a != b`, false when either has no value."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_by_zero_and_missing_values_are_none() {
        assert_eq!(div(Some(1.0), Some(0.0)), None);
        assert_eq!(div(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(add(None, Some(1.0)), None);
        assert_eq!(mul(Some(f64::MAX), Some(2.0)), None);
        assert_eq!(Column::value(&Some(f64::NAN)), None);
        assert_eq!(Column::value(&7_u64), Some(7.0));
        assert_eq!(Column::value(&None::<f64>), None);
    }

    #[test]
    fn comparisons_with_none_are_false() {
        assert!(gt(Some(2.0), Some(1.0)));
        assert!(!gt(None, Some(1.0)));
        assert!(!lt(None, Some(1.0)));
        assert!(!ne(None, Some(1.0)));
        assert!(eq(Some(1.0), Some(1.0)));
    }
}
