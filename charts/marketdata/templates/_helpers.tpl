{{/*
Names and labels. Every object carries the recommended app.kubernetes.io labels; selectors use only
name + instance (+ component for a service's pods).
*/}}

{{- define "marketdata.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "marketdata.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "marketdata.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "marketdata.selectorLabels" -}}
app.kubernetes.io/name: {{ include "marketdata.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "marketdata.labels" -}}
helm.sh/chart: {{ include "marketdata.chart" . }}
{{ include "marketdata.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: marketdata
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component. Call with (dict "root" $ "component" "collector"). */}}
{{- define "marketdata.componentLabels" -}}
{{ include "marketdata.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "marketdata.componentSelectorLabels" -}}
{{ include "marketdata.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* <fullname>-<component>, the name of every per-component object. */}}
{{- define "marketdata.componentName" -}}
{{- printf "%s-%s" (include "marketdata.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "marketdata.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "marketdata.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "marketdata.fullname" .)) }}
{{- end }}

{{- define "marketdata.configName" -}}
{{- printf "%s-config" (include "marketdata.fullname" .) }}
{{- end }}

{{/* MARKETDATA_<KEY>: "volume-profile" -> "VOLUME_PROFILE" */}}
{{- define "marketdata.envKey" -}}
{{- . | upper | replace "-" "_" }}
{{- end }}

{{/* The port a service's clients and probes use: gRPC, or HTTP for the MCP bridge. */}}
{{- define "marketdata.apiPortName" -}}
{{- if .grpc }}grpc{{ else }}http{{ end }}
{{- end }}

{{- define "marketdata.apiPort" -}}
{{- .grpc | default .http }}
{{- end }}

{{- define "marketdata.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{/* Hardened container security context for the official MongoDB and Redis images (uid 999). */}}
{{- define "marketdata.backendSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 999
runAsGroup: 999
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "marketdata.backendPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: 999
runAsGroup: 999
fsGroup: 999
seccompProfile:
  type: RuntimeDefault
{{- end }}
