//! `pipeline!`: parse ([`ast`]), check into a model ([`check`]), generate ([`expand`]).

mod ast;
mod check;
mod columns;
mod expand;
mod reads;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::quote;

/// Events named like the runtime's built-in ones are not asked for their field list: the
/// prelude exports the built-in `FeedbackEvent` (and its list, in the macro namespace),
/// and a user's own `FeedbackEvent` (as in DESIGN.md) would make `FeedbackEvent!`
/// ambiguous (rustc lets a derive-made import shadow a glob import only when unused).
/// Their key fields are checked by rustc through `Field<N>` instead.
const BUILTIN_EVENTS: &[&str] = &["FeedbackEvent"];

pub fn expand(input: TokenStream) -> TokenStream {
    let (fields, input) = match split_fields(input) {
        Ok(split) => split,
        Err(e) => return e.to_compile_error(),
    };
    let digest = digest(&input);
    let decl: ast::PipelineDecl = match syn::parse2(input.clone()) {
        Ok(d) => d,
        Err(e) => return e.to_compile_error(),
    };
    let cx = crate::ctxt::Ctxt::new();
    let model = check::check(&cx, &decl);
    if let (Some(model), None) = (&model, &fields) {
        // Named key fields are checked against the event's field list, which the derive
        // hands back through a macro named like the event (see `event::fields_macro`).
        if model.key.is_some() && !cx.has_errors() {
            if let syn::Type::Path(p) = &decl.event {
                let builtin = p
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| BUILTIN_EVENTS.iter().any(|b| s.ident == b));
                if p.qself.is_none() && !builtin {
                    if let Err(e) = cx.check() {
                        return e.to_compile_error();
                    }
                    let path = &p.path;
                    return quote!(#path! { #input });
                }
            }
        }
    }
    if let (Some(model), Some(fields)) = (&model, &fields) {
        check::check_key_fields(&cx, model, fields, &decl.event);
    }
    match (cx.check(), model) {
        (Ok(()), Some(model)) => expand::generate(&decl, &model, &digest),
        // Every rule that yields no model reports why; should one ever not, the user
        // gets an error to report rather than a panicking macro.
        (Ok(()), None) => syn::Error::new_spanned(
            &decl.name,
            "pipeline! found this declaration invalid without saying why (a bug: please report it with the declaration)",
        )
        .to_compile_error(),
        // Quiet failure: the error, plus the types the user expects, so that one mistake
        // gives one error rather than a cascade at every use of the pipeline.
        (Err(e), _) => {
            let mut out = e.to_compile_error();
            out.extend(expand::fallback(&decl));
            out
        }
    }
}

/// A field of the event, as the derive lists it: its name, and its type when that type
/// cannot be a key (a floating-point number).
pub struct EventFieldInfo {
    pub name: String,
    pub float: Option<String>,
}

/// `@fields [a, b = "f64", …] <declaration>` (the derive's answer) or the declaration alone.
fn split_fields(input: TokenStream) -> syn::Result<(Option<Vec<EventFieldInfo>>, TokenStream)> {
    let mut tokens = input.clone().into_iter();
    let (Some(TokenTree::Punct(at)), Some(TokenTree::Ident(kw)), Some(TokenTree::Group(list))) =
        (tokens.next(), tokens.next(), tokens.next())
    else {
        return Ok((None, input));
    };
    if at.as_char() != '@' || kw != "fields" || list.delimiter() != Delimiter::Bracket {
        return Ok((None, input));
    }
    let parser = |s: syn::parse::ParseStream| {
        let mut out = Vec::new();
        while !s.is_empty() {
            let name: syn::Ident = s.parse()?;
            let float = if s.peek(syn::Token![=]) {
                s.parse::<syn::Token![=]>()?;
                Some(s.parse::<syn::LitStr>()?.value())
            } else {
                None
            };
            out.push(EventFieldInfo {
                name: name.to_string(),
                float,
            });
            if !s.is_empty() {
                s.parse::<syn::Token![,]>()?;
            }
        }
        Ok(out)
    };
    let fields = syn::parse::Parser::parse2(parser, list.stream())?;
    Ok((Some(fields), tokens.collect()))
}

/// FNV-1a of the declaration without its leading attributes (doc comments): recorded in
/// checkpoints, so that state written by another declaration of the same name is refused.
fn digest(input: &TokenStream) -> String {
    let mut tokens = input.clone().into_iter().peekable();
    let mut rest = TokenStream::new();
    let mut leading = true;
    while let Some(t) = tokens.next() {
        if leading {
            if let proc_macro2::TokenTree::Punct(p) = &t {
                if p.as_char() == '#' {
                    tokens.next(); // the attribute's [...] group
                    continue;
                }
            }
            leading = false;
        }
        rest.extend(std::iter::once(t));
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rest.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::digest;
    use quote::quote;

    #[test]
    fn the_digest_ignores_doc_comments_but_not_the_declaration() {
        let a = digest(&quote! {
            /// One doc.
            pub pipeline P for E { window: tumbling(1m), aggregate { n: count() } }
        });
        let b = digest(&quote! {
            /// Another doc.
            pub pipeline P for E { window: tumbling(1m), aggregate { n: count() } }
        });
        let c = digest(&quote! {
            /// One doc.
            pub pipeline P for E { window: tumbling(5m), aggregate { n: count() } }
        });
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
