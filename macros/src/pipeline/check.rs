//! The rules of `pipeline!`. Each `check_*` states its rule; every violation is reported
//! into the [`Ctxt`] and checking goes on, so all mistakes show in one compile.

use std::collections::BTreeMap;

use proc_macro2::Span;
use syn::{Expr, Ident, Lit};

use super::ast::{AggEntry, PipelineDecl, SectionBody};
use super::columns;
use crate::ctxt::Ctxt;
use crate::duration::{self, Dur};
use crate::similar::{did_you_mean, list};

pub const SECTIONS: &[&str] = &[
    "watermark",
    "window",
    "key_by",
    "aggregate",
    "late",
    "filter",
    "trigger",
    "derive",
    "emit_when",
];
pub const AGGREGATIONS: &[&str] = &[
    "count",
    "count_if",
    "sum",
    "sum_if",
    "avg",
    "min",
    "max",
    "stddev",
    "stddev_sample",
    "percentile",
    "custom",
];
pub const RESERVED: &[&str] = &["window_start", "window_end", "is_update"];

pub enum WindowModel {
    Tumbling { size: u64, offset: u64 },
    Sliding { size: u64, slide: u64, offset: u64 },
    Session { gap: u64 },
}

pub struct Model {
    pub window: WindowModel,
    pub lateness: u64,
    pub bound: u64,
    pub emit_every: Option<u64>,
    pub idle_timeout: Option<u64>,
    /// `None`: the event's `#[event(key)]` fields.
    pub key: Option<Vec<Ident>>,
    pub aggs: Vec<Agg>,
    pub drop_late: bool,
    pub filter: Option<Expr>,
    pub trigger: Option<Expr>,
    /// The distinct `where` predicates of the aggregations, in first-use order.
    pub conditions: Vec<Expr>,
    /// `derive { … }`: columns computed from the outputs, in declaration order.
    pub derived: Vec<columns::Derived>,
    /// `emit_when: …`: the condition a row meets to be emitted (code over `__row`).
    pub emit_when: Option<proc_macro2::TokenStream>,
}

#[derive(Clone)]
pub struct Agg {
    pub name: Ident,
    pub kind: AggKind,
    /// The user's call, for the row column's doc.
    pub call: Expr,
    /// Index into [`Model::conditions`]: the aggregation sees only events meeting it.
    pub condition: Option<usize>,
}

#[derive(Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "a handful per declaration, only while compiling"
)]
pub enum AggKind {
    Count,
    Sum(Ident),
    Avg(Ident),
    Min(Ident),
    Max(Ident),
    StdDev(Ident),
    StdDevSample(Ident),
    Percentile(Ident, f64),
    /// `custom::<Acc[, Out]>(aggregator, field)`: a user `Aggregator<f64, Acc, Out>`.
    Custom {
        agg: Expr,
        field: Ident,
        acc: syn::Type,
        out: syn::Type,
    },
}

impl AggKind {
    pub fn field(&self) -> Option<&Ident> {
        match self {
            AggKind::Count => None,
            AggKind::Sum(f)
            | AggKind::Avg(f)
            | AggKind::Min(f)
            | AggKind::Max(f)
            | AggKind::StdDev(f)
            | AggKind::StdDevSample(f)
            | AggKind::Percentile(f, _) => Some(f),
            AggKind::Custom { field, .. } => Some(field),
        }
    }
}

pub fn check(cx: &Ctxt, decl: &PipelineDecl) -> Option<Model> {
    let sections = check_sections(cx, decl);
    let window = sections
        .get("window")
        .map(|e| check_window(cx, value(cx, e)?));
    let (bound, emit_every, idle_timeout) = match sections.get("watermark") {
        Some(e) => value(cx, e)
            .and_then(|v| check_watermark(cx, v))
            .unwrap_or((0, None, None)),
        None => (0, None, None),
    };
    let key = sections
        .get("key_by")
        .and_then(|e| value(cx, e))
        .map(|v| check_key_by(cx, v));
    let mut conditions = Vec::new();
    let aggs = match sections.get("aggregate") {
        Some((name, SectionBody::Aggregate(entries))) => check_aggregates(
            cx,
            name,
            entries,
            key.as_ref().and_then(|k| k.as_ref()),
            &mut conditions,
        ),
        Some((name, SectionBody::Value(_))) => {
            cx.error_spanned_by(
                name,
                "`aggregate` is a block: write `aggregate { requests: count(), … }`",
            );
            None
        }
        None => None,
    };
    let drop_late = sections
        .get("late")
        .and_then(|e| value(cx, e))
        .map(|v| check_late(cx, v))
        .unwrap_or(false);
    let filter = sections.get("filter").and_then(|e| value(cx, e)).cloned();
    let trigger = sections.get("trigger").and_then(|e| value(cx, e)).cloned();
    let key_cols: Vec<Ident> = match key.as_ref().and_then(|k| k.as_ref()) {
        Some(k) => k.clone(),
        None => vec![Ident::new("key", Span::call_site())],
    };
    let outputs: Vec<Ident> = match &aggs {
        Some(a) => a.iter().map(|a| a.name.clone()).collect(),
        // Outputs with errors are still columns: no second error at their uses.
        None => match sections.get("aggregate") {
            Some((_, SectionBody::Aggregate(entries))) => {
                entries.iter().map(|e| e.name.clone()).collect()
            }
            _ => Vec::new(),
        },
    };
    let derived = match sections.get("derive") {
        Some((_, SectionBody::Aggregate(entries))) => {
            columns::check_derive(cx, entries, &outputs, &key_cols)
        }
        Some((name, SectionBody::Value(_))) => {
            cx.error_spanned_by(
                name,
                "`derive` is a block: write `derive { error_rate: failures / requests, … }`",
            );
            None
        }
        None => Some(Vec::new()),
    };
    let emit_when = sections
        .get("emit_when")
        .and_then(|e| value(cx, e))
        .map(|e| {
            let derived_names: Vec<Ident> =
                derived.iter().flatten().map(|d| d.name.clone()).collect();
            columns::check_emit_when(cx, e, &outputs, &derived_names, &key_cols)
        });
    let (window, lateness) = window??;
    Some(Model {
        window,
        lateness,
        bound,
        emit_every,
        idle_timeout,
        key: key.flatten(),
        aggs: aggs?,
        drop_late,
        filter,
        trigger,
        conditions,
        derived: derived?,
        emit_when: match emit_when {
            Some(c) => Some(c?),
            None => None,
        },
    })
}

type Sections<'a> = BTreeMap<String, (&'a Ident, &'a SectionBody)>;

fn value<'a>(cx: &Ctxt, (name, body): &(&'a Ident, &'a SectionBody)) -> Option<&'a Expr> {
    match body {
        SectionBody::Value(v) => Some(v),
        SectionBody::Aggregate(_) => {
            cx.error_spanned_by(name, format!("`{name}` takes a value: write `{name}: …,`"));
            None
        }
    }
}

/// Rule: sections are among `SECTIONS`, each at most once; `window` and `aggregate` are required.
fn check_sections<'a>(cx: &Ctxt, decl: &'a PipelineDecl) -> Sections<'a> {
    let mut seen: Sections<'a> = BTreeMap::new();
    // A misspelt required section is reported once, as misspelt, not also as missing.
    let mut suggested: Vec<&str> = Vec::new();
    for s in &decl.sections {
        let n = s.name.to_string();
        if !SECTIONS.contains(&n.as_str()) {
            suggested.extend(crate::similar::closest(&n, SECTIONS));
            cx.error_spanned_by(
                &s.name,
                format!(
                    "unknown section `{n}`{} (the sections are {})",
                    did_you_mean(&n, SECTIONS),
                    list(SECTIONS)
                ),
            );
            continue;
        }
        if seen.contains_key(&n) {
            cx.error_spanned_by(
                &s.name,
                format!("duplicate section `{n}`: it is already declared above; keep one"),
            );
            continue;
        }
        seen.insert(n, (&s.name, &s.body));
    }
    if !seen.contains_key("window") && !suggested.contains(&"window") {
        cx.error_spanned_by(
            &decl.name,
            format!(
                "pipeline `{}` has no `window` section; add e.g. `window: tumbling(5m),`",
                decl.name
            ),
        );
    }
    if !seen.contains_key("aggregate") && !suggested.contains(&"aggregate") {
        cx.error_spanned_by(&decl.name, format!("pipeline `{}` has no `aggregate` section; add e.g. `aggregate {{ requests: count() }}`", decl.name));
    }
    seen
}

struct CallArgs<'a> {
    func: String,
    func_span: Span,
    positional: Vec<&'a Expr>,
    named: Vec<(Ident, &'a Expr)>,
}

fn call_args<'a>(cx: &Ctxt, e: &'a Expr, what: &str, example: &str) -> Option<CallArgs<'a>> {
    let (func, args) = match e {
        Expr::Call(c) => (&*c.func, c.args.iter().collect::<Vec<_>>()),
        Expr::Path(_) => (e, Vec::new()),
        _ => {
            cx.error_spanned_by(e, format!("expected a {what} such as `{example}`"));
            return None;
        }
    };
    let Expr::Path(path) = func else {
        cx.error_spanned_by(func, format!("expected a {what} such as `{example}`"));
        return None;
    };
    let Some(ident) = path.path.get_ident() else {
        cx.error_spanned_by(func, format!("expected a {what} such as `{example}`"));
        return None;
    };
    let mut out = CallArgs {
        func: ident.to_string(),
        func_span: ident.span(),
        positional: Vec::new(),
        named: Vec::new(),
    };
    for a in args {
        match a {
            Expr::Assign(asg) => match &*asg.left {
                Expr::Path(p) if p.path.get_ident().is_some() => {
                    let id = p.path.get_ident().expect("checked").clone();
                    if out.named.iter().any(|(n, _)| *n == id) {
                        cx.error_spanned_by(&id, format!("`{id}` is given twice; keep one"));
                    } else {
                        out.named.push((id, &asg.right));
                    }
                }
                other => {
                    cx.error_spanned_by(other, "expected an option name such as `allowed_lateness`")
                }
            },
            other => out.positional.push(other),
        }
    }
    Some(out)
}

fn named<'a>(cx: &Ctxt, args: &CallArgs<'a>, allowed: &[&str]) -> BTreeMap<String, &'a Expr> {
    let mut out = BTreeMap::new();
    for (n, e) in &args.named {
        let s = n.to_string();
        if allowed.contains(&s.as_str()) {
            out.insert(s, *e);
        } else {
            cx.error_spanned_by(
                n,
                format!(
                    "`{}` has no option `{s}`{} (its options are {})",
                    args.func,
                    did_you_mean(&s, allowed),
                    list(allowed)
                ),
            );
        }
    }
    out
}

/// Rules: `tumbling(size[, offset = d][, allowed_lateness = d])`, `sliding(size, slide[, …])`,
/// `session(gap = d[, allowed_lateness = d])`; durations are positive (offset and lateness
/// may be zero); slide ≤ size and divides it (so windows share panes); offset < size (tumbling)
/// or < slide (sliding).
fn check_window(cx: &Ctxt, e: &Expr) -> Option<(WindowModel, u64)> {
    let args = call_args(cx, e, "window", "tumbling(5m)")?;
    let lateness_of = |named: &BTreeMap<String, &Expr>| -> Option<u64> {
        match named.get("allowed_lateness") {
            Some(e) => duration::parse(cx, e, "allowed lateness", true).map(|d| d.millis),
            None => Some(0),
        }
    };
    let arity = |n: usize, usage: &str| -> bool {
        if args.positional.len() == n {
            true
        } else {
            cx.error_at(args.func_span, format!("`{}` takes {usage}", args.func));
            false
        }
    };
    match args.func.as_str() {
        "tumbling" => {
            let named = named(cx, &args, &["offset", "allowed_lateness"]);
            let lateness = lateness_of(&named);
            if !arity(1, "one size: `tumbling(5m)`") {
                return None;
            }
            let size = duration::parse(cx, args.positional[0], "window size", false)?;
            let offset = match named.get("offset") {
                Some(e) => duration::parse(cx, e, "offset", true)?,
                None => Dur {
                    millis: 0,
                    span: size.span,
                },
            };
            if offset.millis >= size.millis {
                cx.error_at(offset.span, format!("offset {} is not smaller than the window size {}; an offset shifts windows within one size, e.g. `offset = {}`", duration::show(offset.millis), duration::show(size.millis), duration::show(size.millis / 2)));
                return None;
            }
            Some((
                WindowModel::Tumbling {
                    size: size.millis,
                    offset: offset.millis,
                },
                lateness?,
            ))
        }
        "sliding" => {
            let named = named(cx, &args, &["offset", "allowed_lateness"]);
            let lateness = lateness_of(&named);
            if !arity(2, "a size and a slide: `sliding(10m, 1m)`") {
                return None;
            }
            let size = duration::parse(cx, args.positional[0], "window size", false);
            let slide = duration::parse(cx, args.positional[1], "slide", false);
            let (size, slide) = (size?, slide?);
            if slide.millis > size.millis {
                cx.error_at(slide.span, format!("slide {} is larger than the window size {}: events between windows would be lost; use a slide ≤ size, or `tumbling({})`", duration::show(slide.millis), duration::show(size.millis), duration::show(size.millis)));
                return None;
            }
            if size.millis % slide.millis != 0 {
                cx.error_at(slide.span, format!("slide {} does not divide the window size {}: windows could not share slide-sized panes, so every event would be aggregated {} times; use a slide that divides the size, e.g. {}", duration::show(slide.millis), duration::show(size.millis), size.millis.div_ceil(slide.millis), duration::show(gcd(size.millis, slide.millis))));
                return None;
            }
            let offset = match named.get("offset") {
                Some(e) => duration::parse(cx, e, "offset", true)?.millis,
                None => 0,
            };
            if offset >= slide.millis {
                cx.error_spanned_by(
                    named["offset"],
                    format!(
                        "offset {} is not smaller than the slide {}",
                        duration::show(offset),
                        duration::show(slide.millis)
                    ),
                );
                return None;
            }
            Some((
                WindowModel::Sliding {
                    size: size.millis,
                    slide: slide.millis,
                    offset,
                },
                lateness?,
            ))
        }
        "session" => {
            let named = named(cx, &args, &["gap", "allowed_lateness"]);
            let lateness = lateness_of(&named);
            let gap = match (named.get("gap"), args.positional.as_slice()) {
                (Some(e), []) | (None, [e]) => duration::parse(cx, e, "session gap", false)?,
                _ => {
                    cx.error_at(
                        args.func_span,
                        "`session` takes one gap: `session(gap = 5m)`",
                    );
                    return None;
                }
            };
            Some((WindowModel::Session { gap: gap.millis }, lateness?))
        }
        other => {
            cx.error_at(args.func_span, format!("unknown window `{other}`{} (the windows are `tumbling(size)`, `sliding(size, slide)` and `session(gap = …)`)", did_you_mean(other, &["tumbling", "sliding", "session"])));
            None
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Rule: `bounded_out_of_orderness(d[, emit_every = d][, idle_timeout = d])`; the bound may be zero.
fn check_watermark(cx: &Ctxt, e: &Expr) -> Option<(u64, Option<u64>, Option<u64>)> {
    let args = call_args(cx, e, "watermark", "bounded_out_of_orderness(30s)")?;
    if args.func != "bounded_out_of_orderness" {
        cx.error_at(args.func_span, format!("unknown watermark `{}`{} (the watermark is `bounded_out_of_orderness(30s)`, with options `emit_every = 10s` and `idle_timeout = 1m`)", args.func, did_you_mean(&args.func, &["bounded_out_of_orderness"])));
        return None;
    }
    let named = named(cx, &args, &["emit_every", "idle_timeout"]);
    let [bound] = args.positional.as_slice() else {
        cx.error_at(
            args.func_span,
            "`bounded_out_of_orderness` takes one bound: `bounded_out_of_orderness(30s)`",
        );
        return None;
    };
    let bound = duration::parse(cx, bound, "out-of-orderness bound", true);
    let emit = named
        .get("emit_every")
        .map(|e| duration::parse(cx, e, "emit interval", false));
    let idle = named
        .get("idle_timeout")
        .map(|e| duration::parse(cx, e, "idle timeout", false));
    let emit = match emit {
        Some(None) => return None,
        Some(Some(d)) => Some(d.millis),
        None => None,
    };
    let idle = match idle {
        Some(None) => return None,
        Some(Some(d)) => Some(d.millis),
        None => None,
    };
    Some((bound?.millis, emit, idle))
}

/// Rule: every `key_by` field is a field of the event, and one that can be hashed and
/// compared (the derive flags floating-point fields). Reported here, once, at the field:
/// left to rustc, a missing field would be an error at every use of the key type.
pub fn check_key_fields(
    cx: &Ctxt,
    model: &Model,
    fields: &[super::EventFieldInfo],
    event: &syn::Type,
) {
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let event = quote::quote!(#event).to_string().replace(' ', "");
    for k in model.key.iter().flatten() {
        let name = k.to_string();
        match fields.iter().find(|f| f.name == name) {
            None => cx.error_spanned_by(
                k,
                format!(
                    "`{event}` has no field `{name}`{}",
                    match did_you_mean(&name, &names) {
                        s if s.is_empty() => format!("; its fields are {}", list(&names)),
                        s => s,
                    }
                ),
            ),
            Some(super::EventFieldInfo { float: Some(ty), .. }) => cx.error_spanned_by(
                k,
                format!("`{name}` (`{ty}`) cannot be a key field: floating-point numbers are not `Eq` (NaN ≠ NaN) nor `Hash`; key by a string, an integer or an enum, or bucket the value first"),
            ),
            Some(_) => {}
        }
    }
}

/// Rule: `key_by` is a field or a parenthesized list of distinct fields.
fn check_key_by(cx: &Ctxt, e: &Expr) -> Option<Vec<Ident>> {
    let exprs: Vec<&Expr> = match e {
        Expr::Tuple(t) => t.elems.iter().collect(),
        Expr::Paren(p) => vec![&*p.expr],
        other => vec![other],
    };
    let mut out: Vec<Ident> = Vec::new();
    for x in exprs {
        match field_ident(x) {
            Some(id) if out.contains(&id) => {
                cx.error_spanned_by(&id, format!("`{id}` is listed twice in `key_by`"))
            }
            Some(id) => out.push(id),
            None => cx.error_spanned_by(
                x,
                "`key_by` lists fields of the event: `key_by: (model, region)`",
            ),
        }
    }
    if out.is_empty() {
        cx.error_spanned_by(e, "`key_by` needs at least one field; leave the section out to key by the event's `#[event(key)]` fields");
        return None;
    }
    Some(out)
}

fn field_ident(e: &Expr) -> Option<Ident> {
    match e {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
        _ => None,
    }
}

/// Rules: `late` is `side_output` or `drop`.
fn check_late(cx: &Ctxt, e: &Expr) -> bool {
    match field_ident(e).map(|i| i.to_string()).as_deref() {
        Some("side_output") => false,
        Some("drop") => true,
        other => {
            let name = other.unwrap_or("");
            cx.error_spanned_by(e, format!("unknown late handling{} (write `late: side_output` to send late events to the side output, or `late: drop`)", did_you_mean(name, &["side_output", "drop"])));
            false
        }
    }
}

/// Rules: each output is `name: aggregation(args)` with a known aggregation and its arity
/// (`count()`, `sum(field)`, …, `percentile(field, p)` with a literal p in (0, 100]);
/// output names are distinct, and differ from key fields and from `window_start`,
/// `window_end`, `is_update` (and `key` when keyed by the event's key).
fn check_aggregates(
    cx: &Ctxt,
    section: &Ident,
    entries: &[AggEntry],
    key: Option<&Vec<Ident>>,
    conditions: &mut Vec<Expr>,
) -> Option<Vec<Agg>> {
    if entries.is_empty() {
        cx.error_spanned_by(
            section,
            "`aggregate { }` declares no outputs, and a row needs at least one; write e.g. `aggregate { requests: count(), p95: percentile(latency_ms, 95) }`",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut names: Vec<&Ident> = Vec::new();
    for entry in entries {
        let n = entry.name.to_string();
        if names.contains(&&entry.name) {
            cx.error_spanned_by(
                &entry.name,
                format!(
                    "duplicate output `{n}`: an output of this name is declared above; rename one"
                ),
            );
        }
        names.push(&entry.name);
        if RESERVED.contains(&n.as_str()) || (key.is_none() && n == "key") {
            cx.error_spanned_by(
                &entry.name,
                format!("`{n}` is a column every row already has; choose another output name"),
            );
        }
        if key.is_some_and(|k| k.contains(&entry.name)) {
            cx.error_spanned_by(&entry.name, format!("output `{n}` has the name of a key field, which is a column of every row; choose another output name"));
        }
        if let Some((kind, inline)) = check_aggregation(cx, &entry.call) {
            let predicate = match (inline, &entry.condition) {
                (Some(_), Some((kw, _))) => {
                    cx.error_spanned_by(kw, format!("`{}` already has a condition; write `count_if(…)`/`sum_if(…)` or a `where` clause, not both", entry.name));
                    continue;
                }
                (Some(p), None) => Some(p),
                (None, Some((_, p))) => Some(p.clone()),
                (None, None) => None,
            };
            let condition = predicate.map(|p| {
                let text = quote::quote!(#p).to_string();
                match conditions
                    .iter()
                    .position(|c| quote::quote!(#c).to_string() == text)
                {
                    Some(i) => i,
                    None => {
                        conditions.push(p);
                        conditions.len() - 1
                    }
                }
            });
            out.push(Agg {
                name: entry.name.clone(),
                kind,
                call: entry.call.clone(),
                condition,
            });
        }
    }
    (out.len() == entries.len()).then_some(out)
}

/// An aggregation, with the predicate of `count_if`/`sum_if`.
fn check_aggregation(cx: &Ctxt, call: &Expr) -> Option<(AggKind, Option<Expr>)> {
    let Expr::Call(c) = call else {
        cx.error_spanned_by(call, format!("expected an aggregation call such as `count()` or `avg(latency_ms)`; the aggregations are {}", list(AGGREGATIONS)));
        return None;
    };
    if let Some(custom) = check_custom(cx, c) {
        return custom.map(|k| (k, None));
    }
    check_plain(cx, c, call)
}

fn check_plain(cx: &Ctxt, c: &syn::ExprCall, call: &Expr) -> Option<(AggKind, Option<Expr>)> {
    let Some(func) = field_ident(&c.func) else {
        cx.error_spanned_by(&c.func, "expected an aggregation name such as `avg`");
        return None;
    };
    let name = func.to_string();
    let args: Vec<&Expr> = c.args.iter().collect();
    let one_field = |usage: &str| -> Option<Ident> {
        match args.as_slice() {
            [a] => field_ident(a).or_else(|| {
                cx.error_spanned_by(
                    a,
                    format!("`{name}` takes a field of the event, e.g. `{usage}`"),
                );
                None
            }),
            [] => {
                cx.error_at(
                    c.paren_token.span.join(),
                    format!("`{name}()` is missing its field: `{usage}`"),
                );
                None
            }
            _ => {
                cx.error_spanned_by(&c.args, format!("`{name}` takes one field: `{usage}`"));
                None
            }
        }
    };
    let plain = |k: Option<AggKind>| k.map(|k| (k, None));
    match name.as_str() {
        "count" => {
            if !args.is_empty() {
                cx.error_spanned_by(
                    &c.args,
                    "`count()` counts events and takes no field; write `count()` (or `count_if(|e| !e.success)` to count some)",
                );
                return None;
            }
            Some((AggKind::Count, None))
        }
        "count_if" => match args.as_slice() {
            [p] => Some((AggKind::Count, Some((*p).clone()))),
            _ => {
                cx.error_spanned_by(
                    call,
                    "`count_if` takes one predicate over the event: `count_if(|e| !e.success)`",
                );
                None
            }
        },
        "sum_if" => match args.as_slice() {
            [f, p] => {
                let field = field_ident(f).or_else(|| {
                    cx.error_spanned_by(
                        f,
                        "`sum_if` takes a field of the event first: `sum_if(cost_usd, |e| e.success)`",
                    );
                    None
                })?;
                Some((AggKind::Sum(field), Some((*p).clone())))
            }
            _ => {
                cx.error_spanned_by(
                    call,
                    "`sum_if` takes a field and a predicate over the event: `sum_if(cost_usd, |e| e.success)`",
                );
                None
            }
        },
        "sum" => plain(one_field("sum(tokens)").map(AggKind::Sum)),
        "avg" => plain(one_field("avg(latency_ms)").map(AggKind::Avg)),
        "min" => plain(one_field("min(latency_ms)").map(AggKind::Min)),
        "max" => plain(one_field("max(latency_ms)").map(AggKind::Max)),
        "stddev" => plain(one_field("stddev(latency_ms)").map(AggKind::StdDev)),
        "stddev_sample" => plain(one_field("stddev_sample(latency_ms)").map(AggKind::StdDevSample)),
        "percentile" => {
            let [field, p] = args.as_slice() else {
                cx.error_spanned_by(
                    call,
                    "`percentile` takes a field and a percentile: `percentile(latency_ms, 95)`",
                );
                return None;
            };
            let field = field_ident(field).or_else(|| {
                cx.error_spanned_by(
                    field,
                    "`percentile` takes a field of the event first: `percentile(latency_ms, 95)`",
                );
                None
            });
            let p = percentile_literal(cx, p);
            Some((AggKind::Percentile(field?, p?), None))
        }
        "average" | "mean" => {
            cx.error_spanned_by(
                &func,
                format!("unknown aggregation `{name}`: did you mean `avg`?"),
            );
            None
        }
        "median" | "p50" | "p95" | "p99" => {
            let p = if name == "median" { "50" } else { &name[1..] };
            let field = args
                .first()
                .and_then(|a| field_ident(a))
                .map_or("latency_ms".to_string(), |f| f.to_string());
            cx.error_spanned_by(
                &func,
                format!("unknown aggregation `{name}`: did you mean `percentile({field}, {p})`?"),
            );
            None
        }
        other => {
            cx.error_spanned_by(
                &func,
                format!(
                    "unknown aggregation `{other}`{} (the aggregations are {})",
                    did_you_mean(other, AGGREGATIONS),
                    list(AGGREGATIONS)
                ),
            );
            None
        }
    }
}

/// Rule: `custom::<Acc>(aggregator, field)` or `custom::<Acc, Out>(…)` names a user
/// `Aggregator<f64, Acc, Out>` (the reference's custom aggregators), its accumulator type
/// and its result type (default: the accumulator); the field is measured as for `avg`.
/// Returns `None` when the call is not `custom`.
fn check_custom(cx: &Ctxt, c: &syn::ExprCall) -> Option<Option<AggKind>> {
    let Expr::Path(p) = &*c.func else { return None };
    let seg = p.path.segments.last()?;
    if p.path.segments.len() != 1 || seg.ident != "custom" {
        return None;
    }
    let usage = "`custom::<CustomAccumulator>(VarianceAggregator, latency_ms)`";
    let types: Vec<syn::Type> = match &seg.arguments {
        syn::PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                syn::GenericArgument::Type(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let (acc, out) = match types.as_slice() {
        [acc] => (acc.clone(), acc.clone()),
        [acc, out] => (acc.clone(), out.clone()),
        _ => {
            cx.error_spanned_by(&seg.ident, format!("`custom` needs the aggregator's accumulator type (and its result type when it differs): {usage}"));
            return Some(None);
        }
    };
    let args: Vec<&Expr> = c.args.iter().collect();
    let [agg, field] = args.as_slice() else {
        cx.error_spanned_by(
            c,
            format!("`custom` takes the aggregator and a field: {usage}"),
        );
        return Some(None);
    };
    let Some(field) = field_ident(field) else {
        cx.error_spanned_by(
            field,
            format!("`custom` takes a field of the event second: {usage}"),
        );
        return Some(None);
    };
    Some(Some(AggKind::Custom {
        agg: (*agg).clone(),
        field,
        acc,
        out,
    }))
}

/// Rule: a percentile is a number literal in (0, 100].
fn percentile_literal(cx: &Ctxt, e: &Expr) -> Option<f64> {
    let value = match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) if i.suffix().is_empty() => i.base10_parse::<f64>().ok(),
            Lit::Float(f) if f.suffix().is_empty() => f.base10_parse::<f64>().ok(),
            _ => None,
        },
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => Some(-1.0),
        _ => {
            cx.error_spanned_by(e, "the percentile must be a number literal such as `95` or `99.9` (it decides the accumulator at compile time)");
            return None;
        }
    };
    match value {
        Some(p) if p > 0.0 && p <= 100.0 => Some(p),
        Some(_) => {
            cx.error_spanned_by(
                e,
                "percentile outside (0, 100]; use e.g. `50`, `95` or `99.9`",
            );
            None
        }
        None => {
            cx.error_spanned_by(
                e,
                "the percentile must be a plain number literal such as `95` or `99.9`",
            );
            None
        }
    }
}
