//! Call features in the portal: the call-handling form (do-not-disturb and forwarding) shown on the
//! extensions page and on the user's own page, `/ring-groups` (ring groups, pickup groups, and the
//! feature and pickup codes phones dial), and those codes as a user reads them.

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use storage::features::{
    CallHandling, FeatureCodes, MAX_MEMBERS, MAX_PICKUP_NAME, PickupCodes, PickupGroup, RING_SECS,
    RingGroup, RingStrategy, code_clash,
};

use super::layout::{self, Nav, badge, empty_row, field, form_error};
use super::{Ctx, Problem, api, enc};
use crate::api::AppState;

/// The form that replaces an extension's call handling (`PUT …/handling`). With `id`, the form and
/// its fields get ids `{id}-form`, `{id}-dnd`, `{id}-always`… (one per page); without, classes only
/// (one per table row).
pub(super) fn handling_form(h: &CallHandling, id: Option<&str>) -> Markup {
    let url = format!("/api/v1/extensions/{}/handling", enc(&h.extension));
    let id_of = |part: &str| id.map(|p| format!("{p}-{part}"));
    let target = |label: &str, name: &str, part: &str, value: &Option<String>| {
        field(
            label,
            name,
            html! {
                input id=[id_of(part)] type="text" name=(name) inputmode="tel" maxlength="32"
                    data-empty="null" value=(value.as_deref().unwrap_or(""));
            },
        )
    };
    html! {
        form.form-stacked.handling-form id=[id_of("form")] data-api={ "PUT " (url) } data-then="reload" {
            (form_error())
            label.check {
                input id=[id_of("dnd")] type="checkbox" name="dnd" checked[h.dnd];
                "Do not disturb (callers get busy, or the on-busy forward)"
            }
            p.field-error data-for="dnd" hidden {}
            (target("Forward every call to", "forward_always", "always", &h.forward_always))
            (target("When busy, forward to", "forward_busy", "busy", &h.forward_busy))
            (target("When not answered, forward to", "forward_no_answer", "no-answer", &h.forward_no_answer))
            (field(&format!("Not answered after (seconds, {} to {})", RING_SECS.start(), RING_SECS.end()), "no_answer_secs", html! {
                input id=[id_of("secs")] type="number" name="no_answer_secs" min=(RING_SECS.start())
                    max=(RING_SECS.end()) data-type="number" value=(h.no_answer_secs);
            }))
            (target("When no phone is registered, forward to", "forward_unregistered", "unregistered", &h.forward_unregistered))
            p.hint { "An extension, a ring group or an outside number (digits, optionally a leading +). Empty: not forwarded." }
            div.form-actions {
                button.btn.btn-primary id=[id_of("submit")] type="submit" { "Save call handling" }
            }
        }
    }
}

/// Badges that tell, in a table row, how an extension's calls are handled now.
pub(super) fn handling_badges(h: Option<&CallHandling>) -> Markup {
    html! {
        @if let Some(h) = h {
            @if h.dnd { " " (badge("warn", "DND")) }
            @if let Some(to) = &h.forward_always { " " (badge("info", &format!("→ {to}"))) }
        }
    }
}

/// The codes a phone dials, as a list for the user.
pub(super) fn codes_list(c: &FeatureCodes, p: &PickupCodes) -> Markup {
    html! {
        dl.kv #feature-codes-list {
            dt { "Do not disturb on" } dd.mono { (c.dnd_on) }
            dt { "Do not disturb off" } dd.mono { (c.dnd_off) }
            dt { "Forward every call" } dd { span.mono { (c.forward_on) } " then the number" }
            dt { "Forwarding off" } dd.mono { (c.forward_off) }
            dt { "Pick up a call ringing in my pickup groups" } dd.mono #pickup-group-code { (p.group) }
            dt { "Pick up the call ringing an extension of my pickup groups" }
            dd #pickup-directed-code { span.mono { (p.directed) } " then the extension" }
        }
    }
}

fn strategy_name(s: RingStrategy) -> &'static str {
    match s {
        RingStrategy::All => "all at once",
        RingStrategy::Hunt => "one after the other",
    }
}

fn strategy_options(selected: RingStrategy) -> Markup {
    html! {
        option value="all" selected[selected == RingStrategy::All] { "ring all members at once" }
        option value="hunt" selected[selected == RingStrategy::Hunt] { "ring members one after the other" }
    }
}

/// The fields a ring group's create and edit forms share; `id` prefixes the ids of the create form.
fn group_fields(g: Option<&RingGroup>, id: Option<&str>) -> Markup {
    let id_of = |part: &str| id.map(|p| format!("{p}-{part}"));
    let strategy = g.map_or(RingStrategy::All, |g| g.strategy);
    html! {
        (field("Name", "name", html! {
            input id=[id_of("name")] type="text" name="name" maxlength="64" required
                value=(g.map_or("", |g| g.name.as_str()));
        }))
        (field("Strategy", "strategy", html! {
            select id=[id_of("strategy")] name="strategy" { (strategy_options(strategy)) }
        }))
        (field("Members, in hunting order (comma-separated extensions)", "members", html! {
            input id=[id_of("members")] type="text" name="members" data-type="list" required
                placeholder="1001, 1002" value=(g.map(|g| g.members.join(", ")).unwrap_or_default());
        }))
        (field(&format!("Ring time (seconds, {} to {}; per member when hunting)", RING_SECS.start(), RING_SECS.end()), "ring_secs", html! {
            input id=[id_of("ring-secs")] type="number" name="ring_secs" min=(RING_SECS.start())
                max=(RING_SECS.end()) data-type="number" value=(g.map_or(20, |g| g.ring_secs));
        }))
        (field("When nobody answers, send to (extension or ring group)", "no_answer", html! {
            input id=[id_of("no-answer")] type="text" name="no_answer" inputmode="numeric"
                data-empty="null" value=(g.and_then(|g| g.no_answer.as_deref()).unwrap_or(""));
        }))
    }
}

#[derive(Debug, Deserialize)]
struct RingGroups {
    ring_groups: Vec<RingGroup>,
}

#[derive(Debug, Deserialize)]
struct PickupGroups {
    pickup_groups: Vec<PickupGroup>,
}

/// `/ring-groups`: the ring groups and pickup groups with their forms, and the feature and pickup
/// codes (grant `extensions`).
pub(super) async fn page(State(state): State<AppState>, ctx: Ctx) -> Result<Markup, Problem> {
    ctx.require(ctx.who.grants.extensions)?;
    let s = || State(state.clone());
    let list: RingGroups =
        api::answer(crate::api::ring_groups_list(s(), ctx.who.clone()).await).await?;
    let pickup: PickupGroups =
        api::answer(crate::api::pickup_groups_list(s(), ctx.who.clone()).await).await?;
    let codes: FeatureCodes =
        api::answer(crate::api::feature_codes(s(), ctx.who.clone()).await).await?;
    let pickup_codes: PickupCodes =
        api::answer(crate::api::pickup_codes(s(), ctx.who.clone()).await).await?;
    let content = render(
        &list.ring_groups,
        &pickup.pickup_groups,
        &codes,
        &pickup_codes,
    );
    Ok(layout::page(
        &ctx.who,
        Nav::RingGroups,
        "Ring groups",
        content,
    ))
}

/// The page's content.
pub(super) fn render(
    groups: &[RingGroup],
    pickup: &[PickupGroup],
    codes: &FeatureCodes,
    pickup_codes: &PickupCodes,
) -> Markup {
    html! {
        div.card {
            h2 { "Ring groups" }
            p.hint { "A number that rings a team. Inbound routes and forwards may send calls to it." }
            div.table-wrap {
                table.data #ring-groups-table {
                    thead { tr {
                        th { "Number" } th { "Name" } th { "Strategy" } th { "Members" }
                        th.num { "Ring time" } th { "When nobody answers" } th.actions { "Actions" }
                    } }
                    tbody {
                        @for g in groups { (group_row(g)) }
                        @if groups.is_empty() { (empty_row(7, "No ring groups.")) }
                    }
                }
            }
        }
        div.card {
            h2 { "New ring group" }
            form.form #ring-group-create data-api="POST /api/v1/ring-groups" data-then="reload" {
                (form_error())
                (field("Number", "number", html! {
                    input #ring-group-number type="text" name="number" inputmode="numeric" required
                        placeholder="600";
                }))
                (group_fields(None, Some("ring-group")))
                div.form-actions {
                    button.btn.btn-primary #ring-group-submit type="submit" { "Create ring group" }
                }
            }
        }
        div.card #feature-codes {
            h2 { "Feature codes" }
            p.hint {
                "What a phone dials to change its own extension's handling. Each is '*' or '#' and "
                "digits; none may be the start of another, nor of a pickup code."
            }
            form.form #feature-codes-form data-api="PUT /api/v1/feature-codes" data-then="notice"
                data-notice="Feature codes saved." {
                (form_error())
                (field("Do not disturb on", "dnd_on", html! {
                    input #fc-dnd-on type="text" name="dnd_on" required value=(codes.dnd_on);
                }))
                (field("Do not disturb off", "dnd_off", html! {
                    input #fc-dnd-off type="text" name="dnd_off" required value=(codes.dnd_off);
                }))
                (field("Forward every call (then the number)", "forward_on", html! {
                    input #fc-forward-on type="text" name="forward_on" required value=(codes.forward_on);
                }))
                (field("Forwarding off", "forward_off", html! {
                    input #fc-forward-off type="text" name="forward_off" required value=(codes.forward_off);
                }))
                div.form-actions {
                    button.btn.btn-primary #fc-submit type="submit" { "Save feature codes" }
                }
            }
        }
        (pickup_section(pickup, codes, pickup_codes))
    }
}

/// The pickup groups with their forms, and the pickup codes.
fn pickup_section(groups: &[PickupGroup], codes: &FeatureCodes, p: &PickupCodes) -> Markup {
    // Codes stored before the rule existed may still clash: say so (a phone reaches the shorter).
    let clash = code_clash(codes, p);
    html! {
        div.card #pickup-groups {
            h2 { "Pickup groups" }
            p.hint {
                "A phone may answer a call ringing another extension of its pickup groups: "
                span.mono { (p.group) } " picks up a call ringing in any of them; "
                span.mono { (p.directed) } " followed by an extension picks up the call ringing "
                "that extension. An extension may be in several groups."
            }
            div.table-wrap {
                table.data #pickup-groups-table {
                    thead { tr { th { "Name" } th { "Members" } th.actions { "Actions" } } }
                    tbody {
                        @for g in groups { (pickup_row(g)) }
                        @if groups.is_empty() { (empty_row(3, "No pickup groups.")) }
                    }
                }
            }
        }
        div.card {
            h2 { "New pickup group" }
            form.form #pickup-group-create data-api="PUT /api/v1/pickup-groups/{name}" data-then="reload" {
                (form_error())
                (field(&format!("Name (1 to {MAX_PICKUP_NAME} letters, digits, spaces, '-' or '_')"), "name", html! {
                    input #pickup-group-name type="text" name="name" maxlength=(MAX_PICKUP_NAME) required
                        placeholder="Front desk";
                }))
                (pickup_members_field(None, Some("pickup-group-members")))
                p.hint { "A name already taken replaces that group's members." }
                div.form-actions {
                    button.btn.btn-primary #pickup-group-submit type="submit" { "Create pickup group" }
                }
            }
        }
        div.card #pickup-codes {
            h2 { "Pickup codes" }
            p.hint {
                "What a phone dials to answer a call ringing elsewhere in its pickup groups. Each is "
                "'*' or '#' and digits; none may be the start of another, nor of a feature code."
            }
            @if let Some(c) = clash {
                p.banner.banner-bad #pickup-codes-clash {
                    "The " (c.pickup.0) " pickup code " (c.pickup.1) " and the feature code "
                    (c.feature.0) " (" (c.feature.1) ") clash: one is the start of the other. "
                    "Change one of them."
                }
            }
            form.form #pickup-codes-form data-api="PUT /api/v1/pickup-codes" data-then="notice"
                data-notice="Pickup codes saved." {
                (form_error())
                (field("Pick up a call ringing in the caller's pickup groups", "group", html! {
                    input #pc-group type="text" name="group" required value=(p.group);
                }))
                (field("Pick up the call ringing one extension (then its number)", "directed", html! {
                    input #pc-directed type="text" name="directed" required value=(p.directed);
                }))
                div.form-actions {
                    button.btn.btn-primary #pc-submit type="submit" { "Save pickup codes" }
                }
            }
        }
    }
}

/// A pickup group's members field; `id` names the input of the create form.
fn pickup_members_field(g: Option<&PickupGroup>, id: Option<&str>) -> Markup {
    field(
        &format!("Members (comma-separated extensions, at most {MAX_MEMBERS})"),
        "members",
        html! {
            input id=[id] type="text" name="members" data-type="list" placeholder="1001, 1002"
                value=(g.map(|g| g.members.join(", ")).unwrap_or_default());
        },
    )
}

fn pickup_row(g: &PickupGroup) -> Markup {
    let url = format!("/api/v1/pickup-groups/{}", enc(&g.name));
    html! {
        tr id={ "pickup-group-row-" (enc(&g.name)) } data-pickup-group=(g.name) {
            td { strong { (g.name) } }
            td.mono {
                @if g.members.is_empty() { "—" } @else { (g.members.join(", ")) }
            }
            td.actions {
                details.row-edit {
                    summary.btn.btn-small.pickup-group-edit-open { "Edit" }
                    div.popover {
                        form.form-stacked.pickup-group-edit data-api={ "PUT " (url) } data-then="reload" {
                            (form_error())
                            (pickup_members_field(Some(g), None))
                            div.form-actions { button.btn.btn-primary type="submit" { "Save" } }
                        }
                    }
                }
                button.btn.btn-small.btn-danger.pickup-group-delete type="button"
                    data-api={ "DELETE " (url) }
                    data-confirm={ "Delete pickup group " (g.name) "?" }
                    data-then="reload" { "Delete" }
            }
        }
    }
}

fn group_row(g: &RingGroup) -> Markup {
    let url = format!("/api/v1/ring-groups/{}", enc(&g.number));
    html! {
        tr id={ "ring-group-row-" (g.number) } data-ring-group=(g.number) {
            td.mono { strong { (g.number) } }
            td { (g.name) }
            td { (strategy_name(g.strategy)) }
            td.mono { (g.members.join(", ")) }
            td.num { (g.ring_secs) " s" }
            td.mono { (g.no_answer.as_deref().unwrap_or("—")) }
            td.actions {
                details.row-edit {
                    summary.btn.btn-small.ring-group-edit-open { "Edit" }
                    div.popover {
                        form.form-stacked.ring-group-edit data-api={ "PUT " (url) } data-then="reload" {
                            (form_error())
                            (group_fields(Some(g), None))
                            div.form-actions { button.btn.btn-primary type="submit" { "Save" } }
                        }
                    }
                }
                button.btn.btn-small.btn-danger.ring-group-delete type="button"
                    data-api={ "DELETE " (url) }
                    data-confirm={ "Delete ring group " (g.number) " (" (g.name) ")?" }
                    data-then="reload" { "Delete" }
            }
        }
    }
}
