variable "enabled" {
  description = "Kill switch: false scales the StatefulSet to 0 replicas (nothing dispatched or reaped; the store is kept)."
  type        = bool
  default     = true
}

variable "replicas" {
  description = "Pods when enabled: one is active (holds the Dolt lock), the others stand by and take over within about a probe interval"
  type        = number
  default     = 2
}

variable "namespace" {
  description = "Namespace to deploy into (the one Dolt runs in)."
  type        = string
  default     = "beads-server"
}

variable "image_repository" {
  description = "Image repository of beads-sched (built from ops/Dockerfile)."
  type        = string
  default     = "beads-sched"
}

variable "image_tag" {
  description = "Image tag."
  type        = string
  default     = "0.1.0"
}

variable "dolt_url" {
  description = "BEADS_SCHED_DOLT_URL without the password: mysql://user@host:port/db."
  type        = string
  default     = "mysql://beads@dolt.beads-server.svc:3306/code"

  validation {
    condition     = can(regex("^mysql://[^:@/]+@", var.dolt_url))
    error_message = "dolt_url must be mysql://user@host[:port]/db, without a password (use dolt_password_secret_name)."
  }
}

variable "agent_url" {
  description = "BEADS_SCHED_AGENT_URL: base URL of the agent service."
  type        = string
  default     = "http://claude-agent-service.claude-agent.svc"
}

variable "agent_token_secret_name" {
  description = "Secret holding the agent service's bearer token."
  type        = string
  default     = "beads-sched-agent-token"
}

variable "agent_token_secret_key" {
  description = "Key of the token in agent_token_secret_name."
  type        = string
  default     = "token"
}

variable "dolt_password_secret_name" {
  description = "Secret holding the Dolt password."
  type        = string
  default     = "beads-sched-dolt-password"
}

variable "dolt_password_secret_key" {
  description = "Key of the password in dolt_password_secret_name."
  type        = string
  default     = "password"
}

variable "probe_interval" {
  description = "BEADS_SCHED_PROBE_INTERVAL: how often Dolt is probed for changes."
  type        = string
  default     = "1s"
}

variable "dispatch_interval" {
  description = "BEADS_SCHED_DISPATCH_INTERVAL: full dispatch cycle at least this often."
  type        = string
  default     = "2m"
}

variable "reap_interval" {
  description = "BEADS_SCHED_REAP_INTERVAL: how often in-flight attempts are reconciled."
  type        = string
  default     = "1m"
}

variable "stale_after" {
  description = "BEADS_SCHED_STALE_AFTER: an in-progress bead without update for this long is stale."
  type        = string
  default     = "30m"
}

variable "max_attempts" {
  description = "BEADS_SCHED_MAX_ATTEMPTS: dispatch attempts per bead before it is blocked."
  type        = number
  default     = 3
}

variable "extra_env" {
  description = "More BEADS_SCHED_* settings (name => value), e.g. { BEADS_SCHED_LOG_LEVEL = \"debug\" }."
  type        = map(string)
  default     = {}
}

variable "resources" {
  description = "Container resources (see ops/k8s/README.md for the measurement behind the defaults)."
  type = object({
    requests = map(string)
    limits   = map(string)
  })
  default = {
    requests = { cpu = "10m", memory = "32Mi" }
    limits   = { cpu = "500m", memory = "256Mi" }
  }
}

variable "storage_size" {
  description = "Size of the store's volume."
  type        = string
  default     = "1Gi"
}

variable "storage_class_name" {
  description = "StorageClass of the store's volume; null for the cluster default."
  type        = string
  default     = null
}

variable "admin_network_policy" {
  description = "Admit traffic to the admin port only from Prometheus (a NetworkPolicy)"
  type        = bool
  default     = true
}

variable "prometheus_namespace" {
  description = "Namespace of the Prometheus that scrapes the admin port"
  type        = string
  default     = "monitoring"
}

variable "prometheus_pod_labels" {
  description = "Labels of the Prometheus pods that scrape the admin port"
  type        = map(string)
  default     = { "app.kubernetes.io/name" = "prometheus" }
}

variable "monitoring" {
  description = "Install the alert rules and the Grafana dashboard of ops/monitoring as ConfigMaps (rules for the Prometheus server, the dashboard for Grafana's sidecar)"
  type        = bool
  default     = false
}

variable "monitoring_namespace" {
  description = "Namespace for the monitoring ConfigMaps (default: the module's namespace)"
  type        = string
  default     = null
}
