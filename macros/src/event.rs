//! `#[derive(Event)]`: parse the field attributes, check them, generate the `Event` impl
//! and one `Field<N>` impl per field.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Type};

use crate::ctxt::Ctxt;
use crate::similar::{did_you_mean, list};

/// Field attributes the derive knows.
const ATTRIBUTES: &[&str] = &["key", "timestamp", "value", "unit"];
const UNITS: &[(&str, i64, i64)] = &[
    ("s", 1000, 1),
    ("ms", 1, 1),
    ("us", 1, 1000),
    ("ns", 1, 1_000_000),
];

struct EventField<'a> {
    ident: &'a Ident,
    ty: &'a Type,
    key: bool,
    timestamp: Option<Span>,
    /// `(ms_per_unit, units_per_ms)` of an integer timestamp.
    unit: Option<(i64, i64)>,
    value: bool,
}

/// FNV-1a of a field name: the `N` of `Field<N>` (same as the runtime's `field_id`).
pub fn field_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let fields = parse(&cx, input);
    if let Some(fields) = &fields {
        check(&cx, input, fields);
    }
    match (cx.check(), fields) {
        (Ok(()), Some(fields)) => generate(input, &fields),
        (Err(e), _) => e.to_compile_error(),
        // Parsing reports every failure; should it ever not, an error to report, not a panic.
        (Ok(()), None) => syn::Error::new_spanned(
            &input.ident,
            "derive(Event) found this struct invalid without saying why (a bug: please report it with the struct)",
        )
        .to_compile_error(),
    }
}

/// Rule: an event is a struct with named fields, without generics; each field's
/// `#[event(..)]` attributes are `key`, `timestamp` (with an optional `unit = ".."`) and `value`.
fn parse<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Option<Vec<EventField<'a>>> {
    let named = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(n) => n,
            Fields::Unnamed(u) => {
                cx.error_spanned_by(u, "`#[derive(Event)]` needs named fields: a tuple struct has no field names to key or timestamp by; write `struct Name { field: Type, … }`");
                return None;
            }
            Fields::Unit => {
                cx.error_spanned_by(
                    &input.ident,
                    "`#[derive(Event)]` needs named fields, one of them `#[event(timestamp)]`",
                );
                return None;
            }
        },
        Data::Enum(e) => {
            cx.error_spanned_by(e.enum_token, "`#[derive(Event)]` works on structs with named fields, not on enums; wrap the enum in a struct with a timestamp field");
            return None;
        }
        Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "`#[derive(Event)]` works on structs with named fields, not on unions",
            );
            return None;
        }
    };
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "`#[derive(Event)]` does not support generic events yet; use a concrete struct",
        );
        return None;
    }
    let mut out = Vec::new();
    for f in &named.named {
        let ident = f.ident.as_ref().expect("named field");
        let mut field = EventField {
            ident,
            ty: &f.ty,
            key: false,
            timestamp: None,
            unit: None,
            value: false,
        };
        for attr in f.attrs.iter().filter(|a| a.path().is_ident("event")) {
            let res = attr.parse_nested_meta(|meta| {
                let name = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
                let dup = |set: bool| {
                    if set {
                        cx.error_spanned_by(&meta.path, format!("duplicate `{name}` attribute on field `{ident}`"));
                    }
                };
                match name.as_str() {
                    "key" => {
                        dup(field.key);
                        field.key = true;
                    }
                    "timestamp" => {
                        dup(field.timestamp.is_some());
                        field.timestamp = Some(meta.path.span());
                    }
                    "value" => {
                        dup(field.value);
                        field.value = true;
                    }
                    "unit" => {
                        let lit: LitStr = meta.value()?.parse()?;
                        let unit = lit.value();
                        match UNITS.iter().find(|(u, _, _)| *u == unit) {
                            Some((_, ms_per, per_ms)) => field.unit = Some((*ms_per, *per_ms)),
                            None => cx.error_spanned_by(&lit, format!("unknown timestamp unit \"{unit}\"; the units are {}", list(&["s", "ms", "us", "ns"]))),
                        }
                    }
                    _ => cx.error_spanned_by(
                        &meta.path,
                        format!(
                            "unknown event attribute `{name}`{} (the attributes are `key`, `timestamp`, with `unit = \"…\"` for integers, and `value`)",
                            did_you_mean(&name, ATTRIBUTES)
                        ),
                    ),
                }
                Ok(())
            });
            if let Err(e) = res {
                cx.push(e);
            }
        }
        out.push(field);
    }
    Some(out)
}

/// Rules: exactly one timestamp field; at most one value field; `unit` only with
/// `timestamp`; a field is not both key and timestamp.
fn check(cx: &Ctxt, input: &DeriveInput, fields: &[EventField<'_>]) {
    let stamps: Vec<_> = fields.iter().filter(|f| f.timestamp.is_some()).collect();
    match stamps.as_slice() {
        [] => cx.error_spanned_by(&input.ident, format!("`{}` has no timestamp: mark the field that holds the event time with `#[event(timestamp)]`", input.ident)),
        [_] => {}
        [first, rest @ ..] => {
            for f in rest {
                cx.error_at(f.timestamp.unwrap_or_else(Span::call_site), format!("a second `#[event(timestamp)]` (on `{}`; the first is on `{}`): an event has one event time; keep one", f.ident, first.ident));
            }
        }
    }
    let values: Vec<_> = fields.iter().filter(|f| f.value).collect();
    for f in values.iter().skip(1) {
        cx.error_spanned_by(f.ident, format!("a second `#[event(value)]` (on `{}`; the first is on `{}`): keep one default measure", f.ident, values[0].ident));
    }
    for f in fields {
        if f.key && is_float(f.ty) {
            cx.error_spanned_by(f.ty, format!("`{}` cannot be a key field: floating-point numbers are not `Eq` (NaN ≠ NaN) nor `Hash`; key by a string, an integer or an enum, or bucket the value first", f.ident));
        }
        if f.unit.is_some() && f.timestamp.is_none() {
            cx.error_spanned_by(f.ident, format!("`unit` belongs with `timestamp`: write `#[event(timestamp, unit = \"…\")]` on `{}`", f.ident));
        }
        if f.key && f.timestamp.is_some() {
            cx.error_spanned_by(f.ident, format!("`{}` is both key and timestamp: keying by event time makes every event its own group; remove one", f.ident));
        }
    }
}

/// Whether a type is written `f32`, `f64` or `Option` of one (caught before rustc's
/// trait errors, which would cascade).
fn is_float(ty: &Type) -> bool {
    let Type::Path(p) = ty else { return false };
    let Some(last) = p.path.segments.last() else {
        return false;
    };
    if last.ident == "f32" || last.ident == "f64" {
        return true;
    }
    if last.ident == "Option" {
        if let syn::PathArguments::AngleBracketed(a) = &last.arguments {
            if let Some(syn::GenericArgument::Type(inner)) = a.args.first() {
                return is_float(inner);
            }
        }
    }
    false
}

fn generate(input: &DeriveInput, fields: &[EventField<'_>]) -> TokenStream {
    let name = &input.ident;
    let p = quote!(::llm_optimizer_processor::__private);
    let keys: Vec<_> = fields.iter().filter(|f| f.key).collect();
    let ts = fields
        .iter()
        .find(|f| f.timestamp.is_some())
        .expect("checked: one timestamp");
    let value = fields.iter().find(|f| f.value);

    let key_types = keys.iter().map(|f| f.ty);
    let key_types2 = keys.iter().map(|f| f.ty);
    let key_idents: Vec<_> = keys.iter().map(|f| f.ident).collect();
    let key_names: Vec<String> = keys.iter().map(|f| f.ident.to_string()).collect();
    let ts_ident = ts.ident;
    let ts_name = ts_ident.to_string();
    let value_name = match value {
        Some(v) => {
            let n = v.ident.to_string();
            quote!(::core::option::Option::Some(#n))
        }
        None => quote!(::core::option::Option::None),
    };
    // Through the field's type, spanned on it: a type that cannot be a timestamp is reported
    // once, at the type (the same obligation as the assertion below, so rustc shows it once).
    let ts_ty = ts.ty;
    let ts_span = ts_ty.span();
    let pt = private(ts_span);
    let event_time = match ts.unit {
        Some((ms_per, per_ms)) => {
            quote_spanned!(ts_span=> <#ts_ty as #pt::IntegerTime>::to_millis(&self.#ts_ident, #ms_per, #per_ms))
        }
        None => {
            quote_spanned!(ts_span=> <#ts_ty as #pt::EventTime>::event_time_millis(&self.#ts_ident))
        }
    };
    let (key_type, key_ref_type, key_expr, key_ref_expr) = if keys.is_empty() {
        (quote!(()), quote!(()), quote!(()), quote!(()))
    } else {
        (
            quote!((#(#key_types,)*)),
            quote!(#p::Refs<(#(&'__a #key_types2,)*)>),
            quote!((#(::core::clone::Clone::clone(&self.#key_idents),)*)),
            quote!(#p::Refs((#(&self.#key_idents,)*))),
        )
    };

    // Type rules, spanned on the user's types so rustc's message lands there.
    let key_asserts = keys.iter().map(|f| {
        let ty = f.ty;
        let p = private(ty.span());
        quote_spanned!(ty.span()=> #p::assert_group_key::<#ty>();)
    });
    let value_assert = value.map(|v| {
        let ty = v.ty;
        let id = v.ident;
        let p = private(ty.span());
        quote_spanned!(ty.span()=> #p::assert_numeric::<#ty>(&__e.#id);)
    });
    let field_impls = fields.iter().map(|f| {
        let id = field_id(&f.ident.to_string());
        let ty = f.ty;
        let ident = f.ident;
        quote! {
            #[automatically_derived]
            impl #p::Field<#id> for #name {
                type Type = #ty;
                #[inline]
                fn get(&self) -> &#ty {
                    &self.#ident
                }
            }
        }
    });
    let assert_fn = format_ident!("__assert_{}_fields", name.to_string().to_lowercase());
    let field_names: Vec<String> = fields
        .iter()
        .map(|f| f.ident.to_string().trim_start_matches("r#").to_owned())
        .collect();
    let deserialize_fields = crate::event_decode::deserialize_fields(input, &p);
    let field_names_const = if deserialize_fields.is_empty() {
        quote!()
    } else {
        quote!(const FIELD_NAMES: &'static [&'static str] = &[#(#field_names),*];)
    };
    let fields_macro = fields_macro(input, fields);

    // The key types are spanned on the first key field, where a non-hashable type is reported.
    let key_span = keys.first().map_or_else(Span::call_site, |f| f.ty.span());
    let (key_type, key_ref_type) = if keys.is_empty() {
        (key_type, key_ref_type)
    } else {
        let p = private(key_span);
        let types = keys.iter().map(|f| f.ty);
        let types2 = keys.iter().map(|f| f.ty);
        (
            quote_spanned!(key_span=> (#(#types,)*)),
            quote_spanned!(key_span=> #p::Refs<(#(&'__a #types2,)*)>),
        )
    };
    let key_assoc = quote_spanned! {key_span=>
        type Key = #key_type;
        type KeyRef<'__a> = #key_ref_type where Self: '__a;
    };
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #p::Event for #name {
                #key_assoc
                const KEY_FIELDS: &'static [&'static str] = &[#(#key_names),*];
                const TIMESTAMP_FIELD: &'static str = #ts_name;
                const VALUE_FIELD: ::core::option::Option<&'static str> = #value_name;
                #[inline]
                fn event_time_millis(&self) -> i64 {
                    #event_time
                }
                #[inline]
                fn key(&self) -> Self::Key {
                    #key_expr
                }
                #[inline]
                fn key_ref(&self) -> Self::KeyRef<'_> {
                    #key_ref_expr
                }
                fn grouping_key(&self) -> #p::GroupingKey {
                    #[allow(unused_mut)]
                    let mut __k = #p::GroupingKey::global();
                    #( __k.push(#key_names, #p::GroupKey::key_text(&self.#key_idents)); )*
                    __k
                }
                #field_names_const
                #deserialize_fields
            }
            #(#field_impls)*
            #[allow(dead_code, non_snake_case)]
            fn #assert_fn(__e: &#name) {
                #(#key_asserts)*
                #value_assert
            }
        };
        #fields_macro
    }
}

/// The event's field list for `pipeline!`, as a macro in the macro namespace under the
/// struct's own name: wherever `Req` (the struct) is in scope, so is `Req!` (the list).
///
/// A proc macro cannot see another item's fields, and rustc reports a missing trait impl
/// at every use of the type it names, so `key_by: modl` would cascade into one error per
/// use. Instead `pipeline!` with a `key_by` expands to `Req! { <declaration> }`, which
/// expands to `pipeline! { @fields [model, region, latency_ms = "f64", …] <declaration> }`,
/// and the second pass reports an unknown or floating-point key field once, at its span
/// (the callback pattern of `tt-call`). Floating-point fields carry their type, the one
/// non-hashable kind the derive can tell from syntax.
fn fields_macro(input: &DeriveInput, fields: &[EventField<'_>]) -> TokenStream {
    use std::sync::atomic::{AtomicU64, Ordering};
    // `#[macro_export]` puts the macro at the crate root: unique per derive in one crate.
    static DERIVES: AtomicU64 = AtomicU64::new(0);
    let name = &input.ident;
    let vis = &input.vis;
    let n = DERIVES.fetch_add(1, Ordering::Relaxed);
    let unique = field_id(&format!("{}#{n}", quote!(#input)));
    let mac = format_ident!(
        "__llm_optimizer_processor_fields_of_{}_{:016x}",
        name,
        unique
    );
    let list = fields.iter().map(|f| {
        let id = f.ident;
        if is_float(f.ty) {
            let ty = f.ty;
            let text = quote!(#ty).to_string().replace(' ', "");
            quote!(#id = #text)
        } else {
            quote!(#id)
        }
    });
    quote! {
        #[doc(hidden)]
        #[macro_export]
        #[allow(non_local_definitions)]
        macro_rules! #mac {
            ($($declaration:tt)*) => {
                ::llm_optimizer_processor::pipeline! { @fields [#(#list),*] $($declaration)* }
            };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        #vis use #mac as #name;
    }
}

/// The runtime's private path, spanned at `span` so that errors in generated code point
/// at the user's token rather than at the derive.
pub fn private(span: Span) -> TokenStream {
    quote_spanned!(span=> ::llm_optimizer_processor::__private)
}
