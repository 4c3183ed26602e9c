//! Duration literals of the DSL: `500ms`, `30s`, `5m`, `1h`, `2d`.

use proc_macro2::Span;
use syn::{Expr, Lit};

use crate::ctxt::Ctxt;

/// A checked duration, with the span of its literal.
#[derive(Debug, Clone, Copy)]
pub struct Dur {
    pub millis: u64,
    pub span: Span,
}

const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Reads a duration; `allow_zero` for offsets and lateness. Reports and returns `None` on
/// a bad one.
pub fn parse(cx: &Ctxt, expr: &Expr, what: &str, allow_zero: bool) -> Option<Dur> {
    let lit = match expr {
        Expr::Lit(l) => &l.lit,
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => {
            cx.error_spanned_by(
                expr,
                format!("{what} cannot be negative; write a positive duration such as `30s`"),
            );
            return None;
        }
        Expr::Group(g) => return parse(cx, &g.expr, what, allow_zero),
        _ => {
            cx.error_spanned_by(
                expr,
                format!(
                    "{what} must be a duration literal such as `500ms`, `30s`, `5m`, `1h` or `2d`"
                ),
            );
            return None;
        }
    };
    match lit {
        Lit::Int(i) => {
            let suffix = i.suffix();
            if suffix.is_empty() {
                cx.error_spanned_by(
                    i,
                    format!(
                        "{what} needs a unit: write `{}s` (units: `ms`, `s`, `m`, `h`, `d`)",
                        i.base10_digits()
                    ),
                );
                return None;
            }
            let Some((_, factor)) = UNITS.iter().find(|(u, _)| *u == suffix) else {
                cx.error_spanned_by(i, format!("unknown duration unit `{suffix}`; the units are `ms`, `s`, `m`, `h` and `d`"));
                return None;
            };
            let Some(millis) = i
                .base10_digits()
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(*factor))
                .filter(|m| *m <= i64::MAX as u64)
            else {
                cx.error_spanned_by(i, format!("{what} `{i}` is too large"));
                return None;
            };
            if millis == 0 && !allow_zero {
                cx.error_spanned_by(i, format!("{what} cannot be zero"));
                return None;
            }
            Some(Dur {
                millis,
                span: i.span(),
            })
        }
        Lit::Float(f) => {
            cx.error_spanned_by(f, format!("{what} must be a whole number of a unit: write e.g. `1500ms` instead of `1.5s`"));
            None
        }
        other => {
            cx.error_spanned_by(
                other,
                format!("{what} must be a duration literal such as `30s`"),
            );
            None
        }
    }
}

/// `5m`, `90s`: the shortest exact way to write a duration.
pub fn show(millis: u64) -> String {
    for (unit, factor) in UNITS.iter().rev() {
        if millis.is_multiple_of(*factor) && millis > 0 {
            return format!("{}{unit}", millis / factor);
        }
    }
    format!("{millis}ms")
}
