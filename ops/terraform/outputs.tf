output "admin_url" {
  description = "Base URL of the admin endpoint (/metrics, /healthz, /readyz) inside the cluster."
  value       = "http://${local.name}-0.${local.name}.${var.namespace}.svc:${local.admin_port}"
}

output "replicas" {
  description = "1 while enabled, 0 when the kill switch is off."
  value       = kubernetes_stateful_set_v1.beads_sched.spec[0].replicas
}
