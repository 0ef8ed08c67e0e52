{{/* Names and labels, as `helm create` makes them, so the chart reads like others. */}}
{{- define "eddy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eddy.fullname" -}}
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

{{- define "eddy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eddy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "eddy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "eddy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
TOML `key = value` lines of a map of scalars and lists. JSON's strings, numbers, booleans and arrays of them are
valid TOML, and toJson keeps large integers whole where toString would print 6.7108864e+07.
*/}}
{{- define "eddy.tomlPairs" -}}
{{- range $key, $value := . }}
{{- if kindIs "map" $value }}
{{- fail (printf "config key `%s`: a table belongs in its own section (checkpoints, quota, cluster.settings or extra)" $key) }}
{{- end }}
{{- printf "%s = %s\n" $key (toJson $value) }}
{{- end }}
{{- end }}

{{/* Settings that would start a server that cannot work; refused at install time rather than in a crash loop. */}}
{{- define "eddy.validate" -}}
{{- $v := .Values }}
{{- range $key := list "listen" "data_dir" }}
{{- if hasKey $v.config.settings $key }}
{{- fail (printf "config.settings.%s is set by the chart: use listenAddress/port or persistence.mountPath" $key) }}
{{- end }}
{{- end }}
{{- if and (gt (int $v.replicas) 1) (not $v.cluster.enabled) }}
{{- fail "replicas > 1 needs cluster.enabled: without it each pod is a separate server behind one Service" }}
{{- end }}
{{- if and $v.cluster.enabled (not $v.cluster.database.existingSecret) }}
{{- fail "cluster.enabled needs cluster.database.existingSecret: a Secret holding the PostgreSQL URL" }}
{{- end }}
{{- if and (gt (int $v.replicas) 1) (ne (toString $v.config.checkpoints.storage) "s3") }}
{{- fail "replicas > 1 needs checkpoints every node reaches: config.checkpoints.storage s3 (a job resumes on another node from them)" }}
{{- end }}
{{- range $key := list "database" "node_id" "advertise_url" }}
{{- if hasKey $v.cluster.settings $key }}
{{- fail (printf "cluster.settings.%s is set by the chart: the database from its Secret, node_id and advertise_url from the pod" $key) }}
{{- end }}
{{- end }}
{{- if ge (int $v.preStopSleepSeconds) (int $v.terminationGracePeriodSeconds) }}
{{- fail "preStopSleepSeconds must be shorter than terminationGracePeriodSeconds, or nothing is left to drain in" }}
{{- end }}
{{- $tenantsInFile := contains "[[tenants]]" $v.config.extra }}
{{- $adminInFile := hasKey $v.config.settings "admin_token_sha256" }}
{{- if not (or $v.auth.adminToken.existingSecret $v.auth.tenants.existingSecret $tenantsInFile $adminInFile) }}
{{- fail "the server listens on the pod network, which needs an admin token or tenants: set auth.adminToken.existingSecret or auth.tenants.existingSecret" }}
{{- end }}
{{- end }}
