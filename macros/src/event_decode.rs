//! `#[derive(Event)]`, the decoder: `Event::deserialize_fields`, which reads a map (a JSON
//! object) into the event, parsing only the fields a pipeline reads and skipping the others
//! unread (they take their defaults).
//!
//! It follows the serde attributes it understands — on fields `rename = "…"`, `default`,
//! `with = "…"`, `deserialize_with = "…"`, `skip` and `skip_deserializing` — and
//! serde's rules: unknown fields are ignored, a duplicate field is an error, a missing
//! field is an error unless it is an `Option` (then `None`) or has `#[serde(default)]`.
//! A field may be skipped only when its default is known from its type (`String`, the
//! numbers, `bool`, `Option<…>`) or from `#[serde(default)]`; any other field is always
//! read. Anything else (a struct-level serde attribute, `flatten`, `alias`, …) keeps
//! serde's own `Deserialize`, so the result is never other than serde's.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{DeriveInput, Fields, LitStr, Type};

/// What serde says about one field, as far as the decoder follows it.
struct SerdeField<'a> {
    ident: &'a syn::Ident,
    ty: &'a Type,
    /// The JSON name.
    name: String,
    default: bool,
    skip: bool,
    /// The path of a `deserialize` function (`with = "m"` gives `m::deserialize`).
    with: Option<syn::Path>,
}

/// The `deserialize_fields` method of the `Event` impl, or nothing (serde's
/// `Deserialize` then serves) when the struct uses serde attributes the decoder does not
/// follow or has more than 64 fields.
pub fn deserialize_fields(input: &DeriveInput, p: &TokenStream) -> TokenStream {
    let Some(fields) = serde_fields(input) else {
        return TokenStream::new();
    };
    let name = &input.ident;
    let expecting = format!("struct {name}");
    let n = fields.len();
    let vars: Vec<_> = (0..n).map(|i| format_ident!("__f{i}")).collect();
    let json_names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let indices: Vec<usize> = (0..n).collect();

    // Reading one field: through its `with` function, or its type's `Deserialize`.
    let seeds = fields.iter().enumerate().map(|(i, f)| {
        let seed = format_ident!("__Seed{i}");
        let ty = f.ty;
        let body = match &f.with {
            Some(path) => quote!(#path(d)),
            None => quote!(<#ty as #p::serde::Deserialize<'de>>::deserialize(d)),
        };
        quote! {
            struct #seed;
            impl<'de> #p::serde::de::DeserializeSeed<'de> for #seed {
                type Value = #ty;
                fn deserialize<__D: #p::serde::Deserializer<'de>>(self, d: __D) -> ::core::result::Result<#ty, __D::Error> {
                    #body
                }
            }
        }
    });
    let arms = fields.iter().enumerate().map(|(i, f)| {
        let var = &vars[i];
        let seed = format_ident!("__Seed{i}");
        let json = &f.name;
        let bit = 1u64 << i;
        let skippable = f.skip || f.default || default_known(f.ty);
        let read = if f.skip {
            quote!(false)
        } else if skippable {
            quote!(self.0 & #bit != 0)
        } else {
            quote!(true)
        };
        quote! {
            ::core::option::Option::Some(#i) => {
                if __seen & #bit != 0 {
                    return ::core::result::Result::Err(<__A::Error as #p::serde::de::Error>::duplicate_field(#json));
                }
                __seen |= #bit;
                if #read {
                    #var = ::core::option::Option::Some(__map.next_value_seed(#seed)?);
                } else {
                    __map.next_value::<#p::serde::de::IgnoredAny>()?;
                }
            }
        }
    });
    let builds = fields.iter().enumerate().map(|(i, f)| {
        let ident = f.ident;
        let var = &vars[i];
        let json = &f.name;
        let bit = 1u64 << i;
        let missing = if f.skip || f.default {
            quote!(::core::default::Default::default())
        } else if is_option(f.ty) {
            quote!(::core::option::Option::None)
        } else {
            quote!(return ::core::result::Result::Err(<__A::Error as #p::serde::de::Error>::missing_field(#json)))
        };
        // Present but not read: the default (only for fields whose default is known).
        let unread = if f.skip || f.default || default_known(f.ty) {
            quote!(::core::default::Default::default())
        } else {
            missing.clone()
        };
        quote! {
            #ident: match #var {
                ::core::option::Option::Some(v) => v,
                ::core::option::Option::None if __seen & #bit != 0 => #unread,
                ::core::option::Option::None => #missing,
            }
        }
    });
    let tys = fields.iter().map(|f| f.ty);
    quote! {
        fn deserialize_fields<'de, __D>(__d: __D, __read: u64) -> ::core::result::Result<Self, __D::Error>
        where
            __D: #p::serde::Deserializer<'de>,
        {
            #(#seeds)*
            struct __Key;
            impl<'de> #p::serde::de::DeserializeSeed<'de> for __Key {
                type Value = ::core::option::Option<usize>;
                fn deserialize<__D: #p::serde::Deserializer<'de>>(self, d: __D) -> ::core::result::Result<Self::Value, __D::Error> {
                    d.deserialize_identifier(self)
                }
            }
            impl<'de> #p::serde::de::Visitor<'de> for __Key {
                type Value = ::core::option::Option<usize>;
                fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str("a field name")
                }
                fn visit_str<__E: #p::serde::de::Error>(self, v: &str) -> ::core::result::Result<Self::Value, __E> {
                    ::core::result::Result::Ok(match v {
                        #(#json_names => ::core::option::Option::Some(#indices),)*
                        _ => ::core::option::Option::None,
                    })
                }
            }
            struct __Visitor(u64);
            impl<'de> #p::serde::de::Visitor<'de> for __Visitor {
                type Value = #name;
                fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(#expecting)
                }
                fn visit_map<__A: #p::serde::de::MapAccess<'de>>(self, mut __map: __A) -> ::core::result::Result<#name, __A::Error> {
                    #(let mut #vars: ::core::option::Option<#tys> = ::core::option::Option::None;)*
                    let mut __seen: u64 = 0;
                    while let ::core::option::Option::Some(__k) = __map.next_key_seed(__Key)? {
                        match __k {
                            #(#arms)*
                            _ => {
                                __map.next_value::<#p::serde::de::IgnoredAny>()?;
                            }
                        }
                    }
                    ::core::result::Result::Ok(#name { #(#builds,)* })
                }
            }
            __d.deserialize_map(__Visitor(__read))
        }
    }
}

/// The fields as serde sees them, or `None` when serde is told something the decoder does
/// not follow.
fn serde_fields(input: &DeriveInput) -> Option<Vec<SerdeField<'_>>> {
    if input.attrs.iter().any(|a| a.path().is_ident("serde")) {
        return None;
    }
    let syn::Data::Struct(s) = &input.data else {
        return None;
    };
    let Fields::Named(named) = &s.fields else {
        return None;
    };
    if named.named.len() > 64 {
        return None;
    }
    let mut out = Vec::new();
    for f in &named.named {
        let ident = f.ident.as_ref()?;
        let mut field = SerdeField {
            ident,
            ty: &f.ty,
            name: ident.to_string().trim_start_matches("r#").to_owned(),
            default: false,
            skip: false,
            with: None,
        };
        for attr in f.attrs.iter().filter(|a| a.path().is_ident("serde")) {
            let mut ok = true;
            let res = attr.parse_nested_meta(|meta| {
                let path = |s: LitStr| s.parse::<syn::Path>();
                if meta.path.is_ident("rename") {
                    field.name = meta.value()?.parse::<LitStr>()?.value();
                } else if meta.path.is_ident("default") && meta.input.is_empty() {
                    field.default = true;
                } else if meta.path.is_ident("skip") || meta.path.is_ident("skip_deserializing") {
                    field.skip = true;
                } else if meta.path.is_ident("skip_serializing")
                    || meta.path.is_ident("skip_serializing_if")
                    || meta.path.is_ident("serialize_with")
                {
                    // Serialization only: consume its value, if any.
                    if meta.input.peek(syn::Token![=]) {
                        meta.value()?.parse::<LitStr>()?;
                    }
                } else if meta.path.is_ident("with") {
                    let mut p = path(meta.value()?.parse()?)?;
                    p.segments.push(format_ident!("deserialize").into());
                    field.with = Some(p);
                } else if meta.path.is_ident("deserialize_with") {
                    field.with = Some(path(meta.value()?.parse()?)?);
                } else {
                    ok = false;
                    if meta.input.peek(syn::Token![=]) {
                        meta.value()?.parse::<syn::Expr>()?;
                    } else if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                        let _ = meta.input.parse::<TokenStream>();
                    }
                }
                Ok(())
            });
            if res.is_err() || !ok {
                return None;
            }
        }
        out.push(field);
    }
    Some(out)
}

/// The last segment of a type path.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

fn is_option(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Option")
}

/// Types whose `Default` the decoder may use for a field it skips.
fn default_known(ty: &Type) -> bool {
    const KNOWN: &[&str] = &[
        "String", "bool", "f32", "f64", "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16",
        "u32", "u64", "u128", "usize", "Option",
    ];
    last_segment(ty).is_some_and(|s| KNOWN.iter().any(|k| s.ident == k))
}
