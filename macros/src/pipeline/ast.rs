//! The syntax of `pipeline!`, kept as the user's tokens for spans.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{braced, Attribute, Expr, Ident, Token, Type, Visibility};

pub struct PipelineDecl {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub event: Type,
    pub sections: Vec<Section>,
}

pub struct Section {
    pub name: Ident,
    pub body: SectionBody,
}

pub enum SectionBody {
    /// `name: expr`
    Value(Expr),
    /// `aggregate { out: fn(args) [where pred], … }` or `derive { col: expr, … }`
    Aggregate(Vec<AggEntry>),
}

/// `name: expr` in a block section, with an optional `where predicate`.
pub struct AggEntry {
    pub name: Ident,
    pub call: Expr,
    pub condition: Option<(Token![where], Expr)>,
}

impl Parse for AggEntry {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let call: Expr = input.parse()?;
        let condition = if input.peek(Token![where]) {
            let kw: Token![where] = input.parse()?;
            Some((kw, input.parse()?))
        } else {
            None
        };
        Ok(AggEntry {
            name,
            call,
            condition,
        })
    }
}

impl Parse for PipelineDecl {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let kw: Ident = input.parse()?;
        if kw != "pipeline" {
            return Err(syn::Error::new(kw.span(), format!("expected `pipeline`, found `{kw}`: a declaration reads `pub pipeline Name for EventType {{ … }}`")));
        }
        let name: Ident = input.parse()?;
        input.parse::<Token![for]>().map_err(|e| {
            syn::Error::new(e.span(), "expected `for EventType` after the pipeline name")
        })?;
        let event: Type = input.parse()?;
        let content;
        braced!(content in input);
        let mut sections = Vec::new();
        while !content.is_empty() {
            let name: Ident = content.call(syn::ext::IdentExt::parse_any)?;
            if content.peek(syn::token::Brace) {
                let inner;
                braced!(inner in content);
                let entries: Punctuated<AggEntry, Token![,]> =
                    inner.parse_terminated(AggEntry::parse, Token![,])?;
                sections.push(Section {
                    name,
                    body: SectionBody::Aggregate(entries.into_iter().collect()),
                });
                if content.peek(Token![,]) {
                    content.parse::<Token![,]>()?;
                }
                continue;
            }
            content.parse::<Token![:]>().map_err(|e| syn::Error::new(e.span(), format!("expected `:` after `{name}`: sections read `name: value,` (or `aggregate {{ … }}`)")))?;
            let value: Expr = content.parse()?;
            sections.push(Section {
                name,
                body: SectionBody::Value(value),
            });
            if !content.is_empty() {
                content
                    .parse::<Token![,]>()
                    .map_err(|e| syn::Error::new(e.span(), "expected `,` between sections"))?;
            }
        }
        if !input.is_empty() {
            return Err(input.error(
                "one `pipeline!` declares one pipeline; write a second `pipeline!` for another",
            ));
        }
        Ok(PipelineDecl {
            attrs,
            vis,
            name,
            event,
            sections,
        })
    }
}
