{{- define "stowage.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "stowage.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "stowage.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Checks the values and fails with what to set. */}}
{{- define "stowage.validate" -}}
{{- if not (has .Values.mode (list "single" "scale-out")) -}}
{{- fail (printf "mode must be single or scale-out, not %q" .Values.mode) -}}
{{- end -}}
{{- if eq .Values.mode "scale-out" -}}
{{- if and (not .Values.postgres.url) (not .Values.postgres.existingSecret) -}}
{{- fail "mode scale-out needs PostgreSQL: set postgres.url (postgres://USER:PASSWORD@HOST:5432/DB) or postgres.existingSecret" -}}
{{- end -}}
{{- if not .Values.s3.bucket -}}
{{- fail "mode scale-out needs shared storage: set s3.bucket (and s3.endpoint for an S3-compatible server)" -}}
{{- end -}}
{{- if and (not .Values.encryption.key) (not .Values.encryption.existingSecret) -}}
{{- fail "mode scale-out needs one encryption key for every node: set encryption.key (openssl rand -base64 32) or encryption.existingSecret" -}}
{{- end -}}
{{- if lt (int .Values.replicas) 1 -}}
{{- fail "replicas must be at least 1" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.auth.adminPassword (lt (len .Values.auth.adminPassword) 8) -}}
{{- fail "auth.adminPassword must have at least 8 characters" -}}
{{- end -}}
{{- end -}}

{{/* The name of the Secret holding KEY's value (the chart's, or the existing one). */}}
{{- define "stowage.secretName" -}}
{{- $root := index . 0 -}}{{- $existing := index . 1 -}}
{{- if $existing -}}{{ $existing }}{{- else -}}{{ include "stowage.fullname" $root }}{{- end -}}
{{- end -}}

{{/* stowage.yaml: the chart's settings, then .Values.config over them. */}}
{{- define "stowage.config" -}}
{{- $c := dict "addr" (printf "0.0.0.0:%d" (int .Values.service.port)) "data_dir" "/var/lib/stowage/data" -}}
{{- $_ := set $c "auth" (dict "enabled" .Values.auth.enabled "admin" .Values.auth.admin) -}}
{{- if eq .Values.mode "scale-out" -}}
{{- $_ := set $c "database" (dict "postgres_env" "STOWAGE_PG" "max_conns" (int .Values.postgres.maxConns) "migrate" .Values.postgres.migrate) -}}
{{- $s3 := dict "region" .Values.s3.region "bucket" .Values.s3.bucket "path_style" .Values.s3.pathStyle -}}
{{- with .Values.s3.endpoint }}{{ $_ := set $s3 "endpoint" . }}{{ end -}}
{{- with .Values.s3.prefix }}{{ $_ := set $s3 "prefix" . }}{{ end -}}
{{- $_ := set $c "storage" (dict "s3" $s3) -}}
{{- end -}}
{{- if or .Values.encryption.key .Values.encryption.existingSecret -}}
{{- $_ := set $c "encryption" (dict "key_env" "STOWAGE_KEY") -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $c (deepCopy .Values.config)) -}}
{{- end -}}

{{/* The first admin's password kept in the chart's Secret: auth.adminPassword;
     else the one generated at install, kept on upgrades (lookup); else a new
     one. (helm template cannot look up: it generates one each time.) */}}
{{- define "stowage.adminPassword" -}}
{{- if .Values.auth.adminPassword -}}
{{- .Values.auth.adminPassword -}}
{{- else -}}
{{- $s := lookup "v1" "Secret" .Release.Namespace (include "stowage.fullname" .) -}}
{{- if and $s $s.data (index $s.data "admin-password") -}}
{{- index $s.data "admin-password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 24 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* HTTPS when the registry serves TLS itself (config.tls.cert_file, or
     STOWAGE_TLS_CERT_FILE in env): the probes must ask over https. */}}
{{- define "stowage.scheme" -}}
{{- $tls := dig "tls" "cert_file" "" (.Values.config | default dict) -}}
{{- range .Values.env -}}
{{- if eq .name "STOWAGE_TLS_CERT_FILE" -}}{{- $tls = "env" -}}{{- end -}}
{{- end -}}
{{- if $tls -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
