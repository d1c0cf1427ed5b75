{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "procjob.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name contains it. */}}
{{- define "procjob.fullname" -}}
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

{{- define "procjob.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "procjob.labels" -}}
helm.sh/chart: {{ include "procjob.chart" . }}
{{ include "procjob.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: procjob
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels the Deployment selects its pod by (immutable once installed). */}}
{{- define "procjob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "procjob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "procjob.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "procjob.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The leader election's Lease: one per release, so that two releases in one namespace do not
share it (`<fullname>-operator`: procjob-operator for the release procjob, the operator's default). */}}
{{- define "procjob.leaseName" -}}
{{- printf "%s-operator" (include "procjob.fullname" .) }}
{{- end }}

{{/* The operator image: repository@digest, else repository:tag (default appVersion). */}}
{{- define "procjob.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's RBAC rules, shared by the ClusterRole (all namespaces) and the per-namespace Roles.
Least privilege, checked by tests/integration/test_chart.py (the operator runs as this service
account against a real API server, and `kubectl auth can-i` checks what is denied):
- processingjobs get/list/watch: kopf watches them; the reconciler re-reads one after a conflict.
  patch: adds and removes the procjob.dev/audit finalizer (merge patch, audit database only).
  delete: a finished job past its ttlSecondsAfterFinished, or over the per-namespace cap of
  finished jobs (with a UID precondition: only the job it decided about).
- processingjobs/status update: the reconciler writes the whole status (PUT, optimistic).
- processingjobs/finalizers update: worker pods are created with an ownerReference that sets
  blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement admission plugin (enabled
  on some distributions, e.g. OpenShift) allows only to who may update the owner's finalizers.
- pods get/list/watch/create/delete: worker pods; the watch uses a label selector
  (procjob.dev/job-uid), so no other pod is streamed, but RBAC cannot express that.
  deletecollection: podGC deletes a finished job's ended pods with one request, selected by the
  job's UID label and a phase field selector (never a pod still Pending or Running).
- pods/log get: the log archive reads the tail of each finished attempt's container logs before
  podGC deletes the pod (with a database; `database.logArchive`).
- events create: the operator (and kopf, on errors) posts core/v1 Events; it never patches them.
Not needed and not granted: customresourcedefinitions and namespaces (kopf's scanning is off:
the CRD is discovered through API discovery, which every authenticated user may read, and watched
namespaces are named exactly), leases here (leader election's Lease is granted by a Role of its
own in the release namespace, see rbac.yaml; kopf's peering is not used),
secrets and configmaps (worker pods reference them by name; the kubelet resolves them), pods/exec.
*/}}
{{- define "procjob.rules" -}}
- apiGroups: [procjob.dev]
  resources: [processingjobs]
  verbs: [get, list, watch, patch, delete]
- apiGroups: [procjob.dev]
  resources: [processingjobs/status]
  verbs: [update]
- apiGroups: [procjob.dev]
  resources: [processingjobs/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, deletecollection]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/*
Cluster-scoped rules for the audit history endpoint (GET .../processingjobs/{name}/history on the
HTTP port): it answers only a caller whose bearer token a TokenReview accepts and whom a
SubjectAccessReview allows `get` on that ProcessingJob. Both reviews are cluster-scoped objects
that are created, never stored; they let the operator ask the API server, not act for the caller.
The same two rules as the built-in `system:auth-delegator` ClusterRole.
*/}}
{{- define "procjob.reviewRules" -}}
- apiGroups: [authentication.k8s.io]
  resources: [tokenreviews]
  verbs: [create]
- apiGroups: [authorization.k8s.io]
  resources: [subjectaccessreviews]
  verbs: [create]
{{- end }}
