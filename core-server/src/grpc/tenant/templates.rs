//! Industry templates: requests into commands, templates into messages.

use plinth_api::tenant::v1 as proto;
use plinth_platform::{error::ApiError, identity, store::templates::Template};
use tonic::{Request, Response};
use uuid::Uuid;

use super::{Answer, modules::tenant_module_to_proto, tenants::tenant_to_proto};
use crate::{
    grpc::validate::{Fields, key_token, timestamp},
    templates::{
        MAX_TEMPLATE_DESCRIPTION, MAX_TEMPLATE_MODULES, MAX_TEMPLATE_NAME, TemplateInput,
        TemplateModule, Templates,
    },
};

fn template_to_proto(template: Template) -> proto::IndustryTemplate {
    let record = template.template;
    proto::IndustryTemplate {
        code: record.code,
        name: record.name,
        description: record.description,
        modules: template
            .modules
            .into_iter()
            .map(|module| proto::TemplateModule {
                module_id: module.module_id,
                required: module.required,
                tenant_config: module.tenant_config,
            })
            .collect(),
        active: record.active,
        etag: record.etag,
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
    }
}

/// A template as written, every field checked.
fn template_input(
    template: Option<&proto::IndustryTemplate>,
    with_etag: bool,
) -> Result<TemplateInput, ApiError> {
    let template = template.ok_or_else(|| ApiError::invalid_field("template", "is required"))?;
    let mut fields = Fields::default();
    let mut modules: Vec<TemplateModule> = Vec::new();
    if template.modules.is_empty() {
        fields.violation("template.modules", "is required");
    }
    for (index, module) in fields
        .bounded("template.modules", &template.modules, MAX_TEMPLATE_MODULES)
        .iter()
        .enumerate()
    {
        let field = format!("template.modules[{index}]");
        let module_id = fields.module_id(&format!("{field}.module_id"), &module.module_id);
        if !module_id.is_empty() && modules.iter().any(|other| other.module_id == module_id) {
            fields.violation(&format!("{field}.module_id"), "is named twice");
        }
        let tenant_config = (!module.tenant_config.is_empty())
            .then(|| fields.document(&format!("{field}.tenant_config"), &module.tenant_config));
        modules.push(TemplateModule {
            module_id,
            required: module.required,
            tenant_config,
        });
    }
    let etag = match (with_etag, template.etag.as_str()) {
        (false, _) => None,
        (true, "") => {
            fields.violation("template.etag", "is required to replace a template");
            None
        }
        (true, etag) if etag.len() <= 64 && etag.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Some(etag.to_owned())
        }
        (true, _) => {
            fields.violation("template.etag", "is not an etag from a previous answer");
            None
        }
    };
    let input = TemplateInput {
        code: fields.slug("template.code", &template.code),
        name: fields.name("template.name", &template.name, MAX_TEMPLATE_NAME),
        description: fields.text(
            "template.description",
            &template.description,
            MAX_TEMPLATE_DESCRIPTION,
        ),
        modules,
        active: template.active,
        etag,
    };
    fields.finish()?;
    Ok(input)
}

pub async fn create(
    templates: &Templates,
    request: Request<proto::CreateIndustryTemplateRequest>,
) -> Answer<proto::CreateIndustryTemplateResponse> {
    let principal = identity::principal(&request)?;
    let input = template_input(request.get_ref().template.as_ref(), false)?;
    let template = templates.create(principal, input).await?;
    Ok(Response::new(proto::CreateIndustryTemplateResponse {
        template: Some(template_to_proto(template)),
    }))
}

pub async fn get(
    templates: &Templates,
    request: Request<proto::GetIndustryTemplateRequest>,
) -> Answer<proto::GetIndustryTemplateResponse> {
    let principal = identity::principal(&request)?;
    let mut fields = Fields::default();
    let code = fields.slug("code", &request.get_ref().code);
    fields.finish()?;
    let template = templates.get(principal, &code).await?;
    Ok(Response::new(proto::GetIndustryTemplateResponse {
        template: Some(template_to_proto(template)),
    }))
}

pub async fn list(
    templates: &Templates,
    request: Request<proto::ListIndustryTemplatesRequest>,
) -> Answer<proto::ListIndustryTemplatesResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let page = fields.page(body.page_size, "");
    let after = fields.key_token(&body.page_token, plinth_platform::text::is_slug);
    fields.finish()?;
    let (found, more) = templates
        .list(
            principal,
            body.include_inactive,
            after.as_deref(),
            page.size as usize,
        )
        .await?;
    let next_page_token = match found.last() {
        Some(last) if more => key_token(&last.template.code),
        _ => String::new(),
    };
    Ok(Response::new(proto::ListIndustryTemplatesResponse {
        templates: found.into_iter().map(template_to_proto).collect(),
        next_page_token,
    }))
}

pub async fn update(
    templates: &Templates,
    request: Request<proto::UpdateIndustryTemplateRequest>,
) -> Answer<proto::UpdateIndustryTemplateResponse> {
    let principal = identity::principal(&request)?;
    let input = template_input(request.get_ref().template.as_ref(), true)?;
    let template = templates.update(principal, input).await?;
    Ok(Response::new(proto::UpdateIndustryTemplateResponse {
        template: Some(template_to_proto(template)),
    }))
}

pub async fn delete(
    templates: &Templates,
    request: Request<proto::DeleteIndustryTemplateRequest>,
) -> Answer<proto::DeleteIndustryTemplateResponse> {
    let principal = identity::principal(&request)?;
    let mut fields = Fields::default();
    let code = fields.slug("code", &request.get_ref().code);
    fields.finish()?;
    templates.delete(principal, &code).await?;
    Ok(Response::new(proto::DeleteIndustryTemplateResponse {}))
}

pub async fn apply(
    templates: &Templates,
    request: Request<proto::ApplyIndustryTemplateRequest>,
) -> Answer<proto::ApplyIndustryTemplateResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let tenant_id: Uuid = fields.id("tenant_id", &body.tenant_id);
    let code = fields.slug("template_code", &body.template_code);
    let optional: Vec<String> = fields
        .bounded(
            "optional_module_ids",
            &body.optional_module_ids,
            MAX_TEMPLATE_MODULES,
        )
        .iter()
        .enumerate()
        .map(|(index, module_id)| {
            fields.module_id(&format!("optional_module_ids[{index}]"), module_id)
        })
        .collect();
    fields.finish()?;
    let (tenant, enabled) = templates
        .apply(principal, tenant_id, &code, &optional)
        .await?;
    Ok(Response::new(proto::ApplyIndustryTemplateResponse {
        tenant: Some(tenant_to_proto(tenant)),
        enabled: enabled
            .changed
            .into_iter()
            .map(|(record, version)| tenant_module_to_proto(record, Some(version)))
            .collect(),
        unchanged_module_ids: enabled.unchanged,
        consistency_token: enabled.token,
    }))
}
