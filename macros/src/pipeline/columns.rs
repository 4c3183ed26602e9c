//! The expressions of `derive { … }` and `emit_when: …`: arithmetic and comparisons over
//! the columns of one row, checked here (names, shapes) and by rustc (column types, through
//! the runtime's `Column` trait, spanned at the column's name).
//!
//! Numbers compute in `f64` as `Option<f64>`: a column without a value (an `avg` of no
//! event), a division by zero or a result that is not finite gives `None`, never a panic
//! nor an infinity. A comparison with `None` is false.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{BinOp, Expr, Ident, Lit, UnOp};

use super::ast::AggEntry;
use super::check::RESERVED;
use crate::ctxt::Ctxt;
use crate::similar::{did_you_mean, list};

/// A derived column: its name, the user's expression (for the column's doc) and the code
/// computing it from `__row` (an `Option<f64>`).
#[derive(Clone)]
pub struct Derived {
    pub name: Ident,
    pub expr: Expr,
    pub code: TokenStream,
}

/// What a name in an expression may be.
struct Scope<'a> {
    /// Columns with a numeric value: outputs, then derived columns declared above.
    numbers: Vec<&'a Ident>,
    /// Derived columns declared below (named in an error).
    later: Vec<&'a Ident>,
    /// Key columns (not numbers).
    keys: &'a [Ident],
    /// Where the expression is, for messages (`derive` or `emit_when`).
    section: &'static str,
}

const NUMERIC_TYPES: &[&str] = &[
    "f64", "f32", "u64", "u32", "u16", "u8", "usize", "i64", "i32", "i16", "i8", "isize",
];

/// Rules: each derived column is `name: expression` over the outputs and the derived
/// columns above it, with `+ - * /`, unary `-`, parentheses, number literals and `as`
/// casts to a number type; its name differs from every output, key field, reserved column
/// and other derived column; it has no `where`.
pub fn check_derive(
    cx: &Ctxt,
    entries: &[AggEntry],
    outputs: &[Ident],
    keys: &[Ident],
) -> Option<Vec<Derived>> {
    if entries.is_empty() {
        return Some(Vec::new());
    }
    let all: Vec<&Ident> = entries.iter().map(|e| &e.name).collect();
    let mut out = Vec::new();
    let mut ok = true;
    for (i, entry) in entries.iter().enumerate() {
        let n = entry.name.to_string();
        if outputs.contains(&entry.name) {
            cx.error_spanned_by(&entry.name, format!("derived column `{n}` has the name of an output of `aggregate`; choose another name"));
            ok = false;
        } else if keys.contains(&entry.name) || RESERVED.contains(&n.as_str()) {
            cx.error_spanned_by(
                &entry.name,
                format!("`{n}` is a column every row already has; choose another name"),
            );
            ok = false;
        } else if all[..i].contains(&&entry.name) {
            cx.error_spanned_by(
                &entry.name,
                format!("duplicate derived column `{n}`: one of this name is declared above; rename one"),
            );
            ok = false;
        }
        if let Some((kw, _)) = &entry.condition {
            cx.error_spanned_by(kw, format!("a derived column computes from the row, not from events, so it takes no `where`; put the condition on an output of `aggregate` (`… where |e| …`) and derive `{n}` from it"));
            ok = false;
            continue;
        }
        let scope = Scope {
            numbers: outputs.iter().chain(all[..i].iter().copied()).collect(),
            later: all[i..].to_vec(),
            keys,
            section: "derive",
        };
        match number(cx, &scope, &entry.call) {
            Some(code) => out.push(Derived {
                name: entry.name.clone(),
                expr: entry.call.clone(),
                code,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Rule: `emit_when` is a condition over the row's columns: comparisons of numeric
/// expressions (as in `derive`), `&&`, `||`, `!`, parentheses, `is_update`, `true`, `false`.
pub fn check_emit_when(
    cx: &Ctxt,
    e: &Expr,
    outputs: &[Ident],
    derived: &[Ident],
    keys: &[Ident],
) -> Option<TokenStream> {
    let scope = Scope {
        numbers: outputs.iter().chain(derived).collect(),
        later: Vec::new(),
        keys,
        section: "emit_when",
    };
    condition(cx, &scope, e)
}

fn private() -> TokenStream {
    quote!(::llm_optimizer_processor::__private::column)
}

/// A numeric expression, as code of type `Option<f64>`.
fn number(cx: &Ctxt, s: &Scope<'_>, e: &Expr) -> Option<TokenStream> {
    let c = private();
    match e {
        Expr::Paren(p) => number(cx, s, &p.expr),
        Expr::Group(g) => number(cx, s, &g.expr),
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => {
                let v = i.base10_parse::<f64>().ok()?;
                Some(quote!(::core::option::Option::Some(#v)))
            }
            Lit::Float(f) => {
                let v = f.base10_parse::<f64>().ok()?;
                Some(quote!(::core::option::Option::Some(#v)))
            }
            _ => {
                cx.error_spanned_by(e, format!("`{}` computes with numbers: a column, a number literal such as `1000.0`, and `+ - * /`", s.section));
                None
            }
        },
        Expr::Cast(cast) => {
            let inner = number(cx, s, &cast.expr);
            let ty = &cast.ty;
            let name = quote!(#ty).to_string();
            if !NUMERIC_TYPES.contains(&name.as_str()) {
                cx.error_spanned_by(ty, format!("`{}` computes in f64: `as {name}` is not a cast to a number type (write `as f64`, or leave the cast out)", s.section));
                return None;
            }
            inner
        }
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => {
            let x = number(cx, s, &u.expr)?;
            Some(quote!(#c::neg(#x)))
        }
        Expr::Binary(b) => {
            let op = match b.op {
                BinOp::Add(_) => quote!(add),
                BinOp::Sub(_) => quote!(sub),
                BinOp::Mul(_) => quote!(mul),
                BinOp::Div(_) => quote!(div),
                _ => {
                    let op = &b.op;
                    cx.error_spanned_by(op, format!("`{}` here is a number: it computes with `+ - * /`; `{}` makes a condition (conditions go in `emit_when`)", quote!(#op), s.section));
                    return None;
                }
            };
            let l = number(cx, s, &b.left);
            let r = number(cx, s, &b.right);
            let (l, r) = (l?, r?);
            Some(quote!(#c::#op(#l, #r)))
        }
        Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
            let id = p.path.get_ident()?;
            column(cx, s, id)
        }
        _ => {
            cx.error_spanned_by(e, format!("`{}` computes with the row's columns, number literals, `+ - * /`, `-x`, parentheses and `as f64`; this is not one of them", s.section));
            None
        }
    }
}

/// A column's value (`Option<f64>`), or an error naming what the name is instead.
fn column(cx: &Ctxt, s: &Scope<'_>, id: &Ident) -> Option<TokenStream> {
    let n = id.to_string();
    if s.numbers.contains(&id) {
        let c = private();
        // Spanned at the user's name: a column whose type is not a number is an
        // error here (the `Column` trait says so).
        let at = id.span().resolved_at(Span::call_site());
        return Some(quote_spanned!(at=> #c::Column::value(&__row.#id)));
    }
    if s.later.contains(&id) {
        cx.error_spanned_by(id, format!("derived column `{n}` is declared below; a derived column uses the outputs and the derived columns above it"));
    } else if s.keys.contains(id) {
        cx.error_spanned_by(
            id,
            format!(
                "`{n}` is a key column, not a number; `{}` computes with numeric columns",
                s.section
            ),
        );
    } else if n == "window_start" || n == "window_end" || n == "is_update" {
        cx.error_spanned_by(
            id,
            format!(
                "`{n}` is not a number; `{}` computes with the outputs{}",
                s.section,
                if n == "is_update" && s.section == "emit_when" {
                    " (`is_update` alone is a condition: `!is_update && …`)"
                } else {
                    ""
                }
            ),
        );
    } else {
        let names: Vec<String> = s.numbers.iter().map(|i| i.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let hint = match did_you_mean(&n, &names) {
            h if h.is_empty() => format!("; the row's numeric columns are {}", list(&names)),
            h => h,
        };
        cx.error_spanned_by(id, format!("unknown column `{n}` in `{}`{hint} (expressions use the row's columns, not the event's fields: aggregate a field first)", s.section));
    }
    None
}

/// A condition, as code of type `bool`.
fn condition(cx: &Ctxt, s: &Scope<'_>, e: &Expr) -> Option<TokenStream> {
    let c = private();
    match e {
        Expr::Paren(p) => condition(cx, s, &p.expr),
        Expr::Group(g) => condition(cx, s, &g.expr),
        Expr::Lit(l) if matches!(l.lit, Lit::Bool(_)) => Some(quote!(#l)),
        Expr::Unary(u) if matches!(u.op, UnOp::Not(_)) => {
            let x = condition(cx, s, &u.expr)?;
            Some(quote!(!(#x)))
        }
        Expr::Path(p) if p.path.is_ident("is_update") => Some(quote!(__row.is_update)),
        Expr::Binary(b) => {
            let cmp = match b.op {
                BinOp::And(_) | BinOp::Or(_) => {
                    let l = condition(cx, s, &b.left);
                    let r = condition(cx, s, &b.right);
                    let (l, r) = (l?, r?);
                    let op = &b.op;
                    return Some(quote!((#l) #op (#r)));
                }
                BinOp::Lt(_) => quote!(lt),
                BinOp::Le(_) => quote!(le),
                BinOp::Gt(_) => quote!(gt),
                BinOp::Ge(_) => quote!(ge),
                BinOp::Eq(_) => quote!(eq),
                BinOp::Ne(_) => quote!(ne),
                _ => return not_a_condition(cx, e),
            };
            let l = number(cx, s, &b.left);
            let r = number(cx, s, &b.right);
            let (l, r) = (l?, r?);
            Some(quote!(#c::#cmp(#l, #r)))
        }
        _ => not_a_condition(cx, e),
    }
}

fn not_a_condition(cx: &Ctxt, e: &Expr) -> Option<TokenStream> {
    cx.error_spanned_by(e, "`emit_when` is a condition over the row's columns: compare them, e.g. `emit_when: p95_latency > 2000.0 && requests >= 10`");
    None
}
