//! Code generation for a checked `pipeline!`: an accumulator holding only what the
//! aggregations need, a typed row, a `WindowFunction`, and a `Plan` that the runtime runs.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use super::ast::PipelineDecl;
use super::check::{AggKind, Model, WindowModel};
use crate::event::field_id;

/// What one measured field needs in the accumulator.
#[derive(Default)]
struct Needs {
    sum: bool,
    min: bool,
    max: bool,
    stddev: bool,
    percentile: bool,
}

pub fn generate(decl: &PipelineDecl, m: &Model, digest: &str) -> TokenStream {
    let p = quote!(::llm_optimizer_processor::__private);
    let name = &decl.name;
    let vis = &decl.vis;
    let attrs = &decl.attrs;
    let event = &decl.event;
    let row = format_ident!("{}Row", name);
    let acc = format_ident!("__{}Acc", name);
    let func = format_ident!("__{}Func", name);

    // Measured fields, per condition, in first-use order, with what each needs.
    let mut fields: Vec<(Option<usize>, Ident, Needs)> = Vec::new();
    for a in &m.aggs {
        let Some(f) = a.kind.field() else {
            continue;
        };
        let i = match fields
            .iter()
            .position(|(c, x, _)| x == f && *c == a.condition)
        {
            Some(i) => i,
            None => {
                fields.push((a.condition, f.clone(), Needs::default()));
                fields.len() - 1
            }
        };
        let n = &mut fields[i].2;
        match &a.kind {
            AggKind::Sum(_) | AggKind::Avg(_) => n.sum = true,
            AggKind::Min(_) => n.min = true,
            AggKind::Max(_) => n.max = true,
            AggKind::StdDev(_) | AggKind::StdDevSample(_) => n.stddev = true,
            AggKind::Percentile(..) => n.percentile = true,
            AggKind::Count | AggKind::Custom { .. } => {}
        }
    }

    // The accumulator: only what is needed.
    let mut acc_fields = Vec::new();
    let mut acc_init = Vec::new();
    // What each event adds: unconditionally, then per condition (`where`, `count_if`, …).
    let mut acc_add: Vec<Vec<TokenStream>> = vec![Vec::new(); m.conditions.len() + 1];
    let mut acc_merge = Vec::new();
    let mut acc_reset = Vec::new();
    // Events are always counted: `count()` reads it, and so do counting triggers; events
    // meeting each condition too (`count_if`).
    for c in std::iter::once(None).chain((0..m.conditions.len()).map(Some)) {
        let ev = events_slot(c);
        acc_fields.push(quote!(#ev: u64));
        acc_init.push(quote!(#ev: 0));
        acc_add[group(c)].push(quote!(acc.#ev += 1;));
        acc_merge.push(quote!(into.#ev += from.#ev;));
        acc_reset.push(quote!(acc.#ev = 0;));
    }
    for (c, f, n) in &fields {
        let c = *c;
        let cnt = slot(f, "n", c);
        let sum = slot(f, "sum", c);
        let min = slot(f, "min", c);
        let max = slot(f, "max", c);
        let sd = slot(f, "sd", c);
        let pct = slot(f, "pct", c);
        let mut fold = vec![quote!(acc.#cnt += 1;)];
        acc_fields.push(quote!(#cnt: u64));
        acc_init.push(quote!(#cnt: 0));
        acc_merge.push(quote!(into.#cnt += from.#cnt;));
        acc_reset.push(quote!(acc.#cnt = 0;));
        if n.sum {
            acc_fields.push(quote!(#sum: f64));
            acc_init.push(quote!(#sum: 0.0));
            fold.push(quote!(acc.#sum += __v;));
            acc_merge.push(quote!(into.#sum += from.#sum;));
            acc_reset.push(quote!(acc.#sum = 0.0;));
        }
        if n.min {
            acc_fields.push(quote!(#min: f64));
            acc_init.push(quote!(#min: f64::INFINITY));
            fold.push(quote!(if __v < acc.#min { acc.#min = __v; }));
            acc_merge.push(quote!(if from.#min < into.#min { into.#min = from.#min; }));
            acc_reset.push(quote!(acc.#min = f64::INFINITY;));
        }
        if n.max {
            acc_fields.push(quote!(#max: f64));
            acc_init.push(quote!(#max: f64::NEG_INFINITY));
            fold.push(quote!(if __v > acc.#max { acc.#max = __v; }));
            acc_merge.push(quote!(if from.#max > into.#max { into.#max = from.#max; }));
            acc_reset.push(quote!(acc.#max = f64::NEG_INFINITY;));
        }
        if n.stddev {
            acc_fields.push(quote!(#sd: #p::StdDevAccumulator));
            acc_init.push(quote!(#sd: ::core::default::Default::default()));
            fold.push(quote!(acc.#sd.add(__v);));
            acc_merge.push(quote!(into.#sd.merge(&from.#sd);));
            acc_reset.push(quote!(acc.#sd = ::core::default::Default::default();));
        }
        if n.percentile {
            acc_fields.push(quote!(#pct: #p::PercentileAccumulator));
            acc_init.push(quote!(#pct: #p::PercentileAccumulator::new()));
            fold.push(quote!(acc.#pct.add(__v);));
            acc_merge.push(quote!(into.#pct.merge(&from.#pct);));
            acc_reset.push(quote!(acc.#pct.clear();));
        }
        // The field access and the Numeric bound are spanned on the user's field name.
        let pf = crate::event::private(f.span());
        let read = quote_spanned!(user(f.span())=> #pf::Numeric::to_f64(&e.#f));
        acc_add[group(c)].push(quote! {
            if let ::core::option::Option::Some(__v) = #read {
                #(#fold)*
            }
        });
    }

    // Custom aggregators: one accumulator each, driven through the `Aggregator` trait.
    for a in &m.aggs {
        let AggKind::Custom {
            agg,
            field,
            acc: acc_ty,
            out,
        } = &a.kind
        else {
            continue;
        };
        let slot = format_ident!("{}_custom", a.name);
        let pf = crate::event::private(field.span());
        let read = quote_spanned!(user(field.span())=> #pf::Numeric::to_f64(&e.#field));
        let tr = quote!(<_ as #p::Aggregator<f64, #acc_ty, #out>>);
        acc_fields.push(quote!(#slot: #acc_ty));
        acc_init.push(quote!(#slot: #tr::create_accumulator(&#agg)));
        acc_add[group(a.condition)].push(quote! {
            if let ::core::option::Option::Some(__v) = #read {
                #tr::add(&#agg, &mut acc.#slot, &__v);
            }
        });
        acc_merge.push(quote!(into.#slot = #tr::merge(&#agg, &into.#slot, &from.#slot);));
        acc_reset.push(quote!(acc.#slot = #tr::create_accumulator(&#agg);));
    }
    // Each condition is tested once per event; its aggregations see the events meeting it.
    let acc_add: Vec<TokenStream> = acc_add
        .into_iter()
        .enumerate()
        .map(|(i, adds)| {
            if i == 0 {
                return quote!(#(#adds)*);
            }
            let pred = &m.conditions[i - 1];
            quote! {
                if #p::filter_fn::<#event>(#pred)(e) {
                    #(#adds)*
                }
            }
        })
        .collect();

    // Key: the listed fields (types named through `Field<N>`) or the event's own key.
    let key_span = m
        .key
        .as_ref()
        .and_then(|k| k.first())
        .map_or_else(proc_macro2::Span::call_site, |k| k.span());
    let (key_type, key_ref, key_cols, key_values, key_asserts) = match &m.key {
        Some(keys) => {
            let ids: Vec<u64> = keys.iter().map(|k| field_id(&k.to_string())).collect();
            let types: Vec<TokenStream> = keys
                .iter()
                .zip(&ids)
                .map(|(k, id)| {
                    let p = crate::event::private(k.span());
                    quote_spanned!(k.span()=> <#event as #p::Field<#id>>::Type)
                })
                .collect();
            let gets = keys
                .iter()
                .zip(&ids)
                .map(|(k, id)| quote_spanned!(user(k.span())=> <#event as #p::Field<#id>>::get(e)));
            let idx = (0..keys.len()).map(syn::Index::from);
            let asserts = keys
                .iter()
                .zip(&types)
                .map(|(k, t)| quote_spanned!(k.span()=> #p::assert_group_key::<#t>();));
            (
                quote!((#(#types,)*)),
                quote!(#p::Refs((#(#gets,)*))),
                {
                    let docs = keys.iter().map(|k| format!("Key field `{k}`."));
                    quote!(#(#[doc = #docs] pub #keys: #types,)*)
                },
                quote!(#(#keys: ::core::clone::Clone::clone(&fired.key.#idx),)*),
                quote!(#(#asserts)*),
            )
        }
        None => (
            quote!(<#event as #p::Event>::Key),
            quote!(<#event as #p::Event>::key_ref(e)),
            quote!(#[doc = "The event's key (its `#[event(key)]` fields)."] pub key: <#event as #p::Event>::Key,),
            quote!(key: ::core::clone::Clone::clone(fired.key),),
            quote!(),
        ),
    };

    // Row columns, one per output.
    let mut cols = Vec::new();
    let mut values = Vec::new();
    for a in &m.aggs {
        let out = &a.name;
        let a_call = &a.call;
        let c = a.condition;
        let (ty, v) = match &a.kind {
            AggKind::Count => {
                let ev = events_slot(c);
                (quote!(u64), quote!(acc.#ev))
            }
            AggKind::Sum(f) => {
                let s = slot(f, "sum", c);
                (quote!(f64), quote!(acc.#s))
            }
            AggKind::Avg(f) => {
                let (s, n) = (slot(f, "sum", c), slot(f, "n", c));
                (
                    quote!(::core::option::Option<f64>),
                    quote!((acc.#n > 0).then(|| acc.#s / acc.#n as f64)),
                )
            }
            AggKind::Min(f) => {
                let (x, n) = (slot(f, "min", c), slot(f, "n", c));
                (
                    quote!(::core::option::Option<f64>),
                    quote!((acc.#n > 0).then_some(acc.#x)),
                )
            }
            AggKind::Max(f) => {
                let (x, n) = (slot(f, "max", c), slot(f, "n", c));
                (
                    quote!(::core::option::Option<f64>),
                    quote!((acc.#n > 0).then_some(acc.#x)),
                )
            }
            AggKind::StdDev(f) => {
                let sd = slot(f, "sd", c);
                (
                    quote!(::core::option::Option<f64>),
                    quote!((acc.#sd.count > 0).then(|| acc.#sd.population())),
                )
            }
            AggKind::StdDevSample(f) => {
                let sd = slot(f, "sd", c);
                (
                    quote!(::core::option::Option<f64>),
                    quote!((acc.#sd.count > 1).then(|| acc.#sd.sample())),
                )
            }
            AggKind::Percentile(f, pc) => {
                // All percentiles of a field come from one sort (`__{field}_pcts`).
                let all = pcts_slot(f, c);
                let i = percentiles_of(&m.aggs, f, c)
                    .iter()
                    .position(|p| p == pc)
                    .unwrap_or_default();
                (quote!(::core::option::Option<f64>), quote!(#all[#i]))
            }
            AggKind::Custom {
                agg,
                acc: acc_ty,
                out: out_ty,
                ..
            } => {
                let slot = format_ident!("{}_custom", out);
                (
                    quote!(#out_ty),
                    quote!(<_ as #p::Aggregator<f64, #acc_ty, #out_ty>>::get_result(&#agg, &acc.#slot)),
                )
            }
        };
        let doc = match c.and_then(|k| m.conditions.get(k)) {
            Some(pred) if !is_inline(a_call) => format!("`{} where {}`", tidy(a_call), tidy(pred)),
            _ => format!("`{}`", tidy(a_call)),
        };
        cols.push(quote!(#[doc = #doc] pub #out: #ty,));
        values.push(quote!(#out: #v,));
    }
    // Derived columns: computed once the outputs are in the row.
    let mut derive_steps = Vec::new();
    for d in &m.derived {
        let (name, code) = (&d.name, &d.code);
        let doc = format!(
            "`{}` (derived; `None` without a value or on division by zero)",
            tidy(&d.expr)
        );
        cols.push(quote!(#[doc = #doc] pub #name: ::core::option::Option<f64>,));
        values.push(quote!(#name: ::core::option::Option::None,));
        derive_steps.push(quote!(__row.#name = #code;));
    }
    let emits = m.emit_when.as_ref().map(|cond| {
        quote! {
            fn emits(&self, __row: &#row) -> bool {
                #cond
            }
        }
    });

    let spec = match m.window {
        WindowModel::Tumbling { size, offset } => {
            let (size, offset) = (size as i64, offset as i64);
            quote!(#p::WindowSpec::Tumbling { size: #size, offset: #offset })
        }
        WindowModel::Sliding {
            size,
            slide,
            offset,
        } => {
            let (size, slide, offset) = (size as i64, slide as i64, offset as i64);
            quote!(#p::WindowSpec::Sliding { size: #size, slide: #slide, offset: #offset })
        }
        WindowModel::Session { gap } => {
            let gap = gap as i64;
            quote!(#p::WindowSpec::Session { gap: #gap })
        }
    };
    let lateness = m.lateness;
    let bound = m.bound;
    let mut watermark =
        quote!(#p::BoundedOutOfOrdernessWatermark::new(#p::Duration::from_millis(#bound)));
    if let Some(idle) = m.idle_timeout {
        watermark = quote!(#watermark.with_idle_timeout(#p::Duration::from_millis(#idle)));
    }
    if let Some(every) = m.emit_every {
        watermark = quote!(#p::PeriodicWatermarkGenerator::new(#p::Duration::from_millis(#every), ::std::boxed::Box::new(#watermark)));
    }
    let late = if m.drop_late {
        quote!(.with_late_event_handler(#p::LateEventHandler::new(#p::Duration::from_millis(#lateness)).dropping()))
    } else {
        quote!()
    };
    let trigger = m.trigger.as_ref().map(|t| quote!(.with_trigger(#t)));
    let filter = m.filter.as_ref().map(|f| {
        quote! {
            let __keep = #p::filter_fn::<#event>(#f);
            if !__keep(e) {
                return ::core::result::Result::Ok(#p::Fed::Filtered(__ts));
            }
        }
    });
    let row_doc =
        format!("A result row of [`{name}`]: the key, the window and one column per output.");
    let acc_init2 = acc_init.clone();
    let pct_lets = fields
        .iter()
        .filter(|(_, _, n)| n.percentile)
        .map(|(c, f, _)| {
            let all = pcts_slot(f, *c);
            let pct = slot(f, "pct", *c);
            let ps = percentiles_of(&m.aggs, f, *c);
            quote!(let #all = acc.#pct.percentiles(&[#(#ps),*]);)
        });
    let key_assoc = quote_spanned!(key_span=> type Key = #key_type;);
    // The fields the predicates read, when each can say.
    let predicate_reads: Option<Vec<String>> = m
        .filter
        .iter()
        .chain(&m.conditions)
        .map(super::reads::closure_fields)
        .try_fold(Vec::new(), |mut all, fs| {
            all.extend(fs?);
            Some(all)
        });
    let fields_read = if let Some(predicate_reads) = predicate_reads {
        let mut read: Vec<String> = m.key.iter().flatten().map(|k| k.to_string()).collect();
        let measured = m
            .aggs
            .iter()
            .filter_map(|a| a.kind.field().map(|f| f.to_string()));
        for f in measured.chain(predicate_reads) {
            if !read.contains(&f) {
                read.push(f);
            }
        }
        let default_key = m
            .key
            .is_none()
            .then(|| quote!(__read.extend_from_slice(<#event as #p::Event>::KEY_FIELDS);));
        quote! {
            #[allow(unused_mut)]
            let mut __read = ::std::vec![<#event as #p::Event>::TIMESTAMP_FIELD, #(#read),*];
            #default_key
            ::core::option::Option::Some(__read)
        }
    } else {
        quote!(::core::option::Option::None)
    };
    // The grouping key as text, for keyed sinks (Kafka's message key).
    let key_text = match &m.key {
        Some(keys) => {
            let names = keys.iter().map(|k| k.to_string());
            quote! {
                [#(#p::key_part(#names, &self.#keys)),*].join(",")
            }
        }
        None => quote!(#p::key_text_of(<#event as #p::Event>::KEY_FIELDS, &self.key)),
    };
    let build_row = if derive_steps.is_empty() {
        quote!(#row { #key_values window_start: #p::from_millis(fired.start), window_end: #p::from_millis(fired.end), is_update: fired.is_update, #(#values)* })
    } else {
        quote! {
            let mut __row = #row {
                #key_values
                window_start: #p::from_millis(fired.start),
                window_end: #p::from_millis(fired.end),
                is_update: fired.is_update,
                #(#values)*
            };
            #(#derive_steps)*
            __row
        }
    };

    quote! {
        #(#attrs)*
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #name;

        #[doc = #row_doc]
        #[derive(Debug, Clone, #p::serde::Serialize)]
        #[serde(crate = "::llm_optimizer_processor::__private::serde")]
        #vis struct #row {
            #key_cols
            /// Window start.
            pub window_start: #p::DateTime<#p::Utc>,
            /// Window end.
            pub window_end: #p::DateTime<#p::Utc>,
            /// Whether this row revises an earlier row of the same key and window.
            pub is_update: bool,
            #(#cols)*
        }

        #[doc(hidden)]
        #[doc = "The accumulator of one key and window: only what the outputs need."]
        #[derive(Debug, Clone, #p::serde::Serialize, #p::serde::Deserialize)]
        #[serde(crate = "::llm_optimizer_processor::__private::serde")]
        #vis struct #acc {
            #(#acc_fields,)*
        }

        impl ::core::default::Default for #acc {
            fn default() -> Self {
                #acc { #(#acc_init,)* }
            }
        }

        #[doc(hidden)]
        #[doc = "The aggregation of this pipeline."]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #func;

        #[automatically_derived]
        impl #p::WindowFunction for #func {
            type Input = #event;
            type Acc = #acc;
            #[inline]
            fn create(&self) -> #acc {
                #acc { #(#acc_init2,)* }
            }
            #[inline]
            fn add(&self, acc: &mut #acc, e: &#event) {
                #(#acc_add)*
            }
            #[inline]
            fn merge(&self, into: &mut #acc, from: &#acc) {
                #(#acc_merge)*
            }
            fn count(&self, acc: &#acc) -> u64 {
                acc.__events
            }
            fn reset(&self, acc: &mut #acc) {
                #(#acc_reset)*
            }
        }

        #[automatically_derived]
        impl #p::Plan for #name {
            type Event = #event;
            #key_assoc
            type Func = #func;
            type Row = #row;

            fn function(&self) -> #func {
                #func
            }

            fn describe(&self) -> ::std::string::String {
                ::std::format!("{} (declaration {})", ::core::any::type_name::<Self>(), #digest)
            }

            #[inline]
            fn feed<__T, __E>(
                &self,
                op: &mut #p::WindowOperator<Self::Key, #func, __T>,
                partition_watermark: i64,
                e: &#event,
                envelope: #p::Envelope,
                emit: &mut __E,
            ) -> #p::ProcessorResult<#p::Fed>
            where
                __T: #p::WindowTrigger,
                __E: FnMut(#p::Fired<'_, Self::Key, #acc>),
            {
                let __ts = match envelope.timestamp {
                    ::core::option::Option::Some(t) => t,
                    ::core::option::Option::None => <#event as #p::Event>::event_time_millis(e),
                };
                #filter
                let __key = #key_ref;
                ::core::result::Result::Ok(#p::Fed::Offered(
                    __ts,
                    op.on_event(partition_watermark, __ts, &__key, e, emit),
                ))
            }

            #[inline]
            fn event_time(&self, e: &#event, envelope: &mut #p::Envelope) -> #p::ProcessorResult<i64> {
                ::core::result::Result::Ok(match envelope.timestamp {
                    ::core::option::Option::Some(t) => t,
                    ::core::option::Option::None => <#event as #p::Event>::event_time_millis(e),
                })
            }

            fn route(&self, e: &#event, envelope: &mut #p::Envelope) -> #p::ProcessorResult<(i64, u64)> {
                let __ts = match envelope.timestamp {
                    ::core::option::Option::Some(t) => t,
                    ::core::option::Option::None => <#event as #p::Event>::event_time_millis(e),
                };
                let __key = #key_ref;
                ::core::result::Result::Ok((__ts, #p::key_hash(&__key)))
            }

            fn fields_read(&self) -> ::core::option::Option<::std::vec::Vec<&'static str>> {
                #fields_read
            }

            fn json_decoder(&self) -> #p::JsonDecoder<#event> {
                #p::JsonDecoder::derived(#p::Plan::fields_read(self))
            }

            fn row(&self, _: &#func, fired: #p::Fired<'_, Self::Key, #acc>) -> #row {
                let acc = fired.acc;
                #(#pct_lets)*
                #build_row
            }

            #emits
        }

        #[automatically_derived]
        impl #p::ResultRow for #row {
            fn key_text(&self) -> ::std::string::String {
                #key_text
            }
            fn window_start(&self) -> #p::DateTime<#p::Utc> {
                self.window_start
            }
            fn window_end(&self) -> #p::DateTime<#p::Utc> {
                self.window_end
            }
            fn is_update(&self) -> bool {
                self.is_update
            }
        }

        impl #name {
            /// A pipeline builder with this declaration's window, watermark and aggregations;
            /// add a source and sinks, then `build()` and `run()`.
            #vis fn pipeline() -> #p::PipelineBuilder<#event, #name> {
                #p::PipelineBuilder::from_plan(#name)
                    .with_window(#spec)
                    .with_allowed_lateness(#p::Duration::from_millis(#lateness))
                    .with_watermark_generator(#watermark)
                    #late
                    #trigger
            }
        }

        const _: () = {
            #[allow(dead_code)]
            fn __assert_keys(e: &#event) {
                let _ = e;
                #key_asserts
            }
        };
    }
}

/// After an error: the types the user refers to, so that only the real mistake is reported.
pub fn fallback(decl: &PipelineDecl) -> TokenStream {
    let p = quote!(::llm_optimizer_processor::__private);
    let name = &decl.name;
    let vis = &decl.vis;
    let row = format_ident!("{}Row", name);
    let event = &decl.event;
    quote! {
        #[allow(missing_docs)]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #name;
        #[allow(missing_docs)]
        #[derive(Debug, Clone, PartialEq)]
        #vis struct #row;
        impl #name {
            #[allow(missing_docs)]
            #vis fn pipeline() -> #p::PipelineBuilder<#event, #p::DynamicPlan<#event>> {
                ::core::panic!("this pipeline! declaration has compile errors")
            }
        }
    }
}

/// A span located at the user's token (errors point there) that resolves names like the
/// rest of the generated code, so the generated locals (`e`) are in scope. The two differ
/// when `pipeline!` runs inside the event's field-list macro (`event::fields_macro`).
fn user(span: proc_macro2::Span) -> proc_macro2::Span {
    span.resolved_at(proc_macro2::Span::call_site())
}

/// The accumulator slot `{field}_{what}` of the unconditional aggregations, and
/// `{field}_{what}_w{k}` of those under condition `k`.
fn slot(field: &Ident, what: &str, condition: Option<usize>) -> Ident {
    match condition {
        None => format_ident!("{}_{}", field, what),
        Some(k) => format_ident!("{}_{}_w{}", field, what, k),
    }
}

/// The event counter of the unconditional aggregations (`__events`) or of condition `k`.
fn events_slot(condition: Option<usize>) -> Ident {
    match condition {
        None => format_ident!("__events"),
        Some(k) => format_ident!("__events_w{}", k),
    }
}

/// The local holding a field's percentiles under a condition.
fn pcts_slot(field: &Ident, condition: Option<usize>) -> Ident {
    match condition {
        None => format_ident!("__{}_pcts", field),
        Some(k) => format_ident!("__{}_pcts_w{}", field, k),
    }
}

/// Index into the per-condition adds: 0 for unconditional, `k + 1` for condition `k`.
fn group(condition: Option<usize>) -> usize {
    condition.map_or(0, |k| k + 1)
}

/// `count_if(…)`/`sum_if(…)`: the call shows its condition.
fn is_inline(call: &syn::Expr) -> bool {
    matches!(call, syn::Expr::Call(c) if matches!(&*c.func, syn::Expr::Path(p) if p.path.is_ident("count_if") || p.path.is_ident("sum_if")))
}

/// Tokens as a reader would write them, for docs.
fn tidy(tokens: &impl quote::ToTokens) -> String {
    tokens
        .to_token_stream()
        .to_string()
        .replace(" (", "(")
        .replace(" ,", ",")
        .replace("| e |", "|e|")
        .replace(" . ", ".")
        .replace("! ", "!")
}

/// The percentiles asked of `field` under `condition`, in declaration order, without repeats.
fn percentiles_of(aggs: &[super::check::Agg], field: &Ident, condition: Option<usize>) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for a in aggs {
        if let AggKind::Percentile(f, p) = &a.kind {
            if f == field && a.condition == condition && !out.contains(p) {
                out.push(*p);
            }
        }
    }
    out
}
