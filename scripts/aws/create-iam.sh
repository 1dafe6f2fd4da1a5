#!/usr/bin/env bash
# Creates or updates the IAM roles and managed policies of the video-encoding workload on EKS,
# least privilege: see scripts/aws/README.md for what each grants and why.
#
#   keda-operator                  the KEDA operator's own role (service account keda:keda-operator);
#                                  may only assume the reader role below
#   video-encoding-keda-reader     assumed by the KEDA operator; may only read the queue's attributes
#   video-encoding-encoder         service account video-encoding:encoder (the ScaledJob's pods)
#   video-encoding-producer        service account video-encoding:producer
#
# IDENTITY picks how pods get these roles: irsa (default; web identity through the cluster's OIDC
# provider) or pod-identity (EKS Pod Identity associations, printed at the end for you to create).
#
# stdout: NAME=arn lines (KEDA_OPERATOR_ROLE_ARN, KEDA_READER_ROLE_ARN, ENCODER_ROLE_ARN,
# PRODUCER_ROLE_ARN), ready for `eval`. Safe to re-run: trust policies are set again, a managed
# policy gets a new default version only when its document changed (old versions are pruned to
# stay under IAM's limit of 5), attaching is idempotent.
#
# It only ever changes what it created itself: every role and policy it creates carries the tag
# managed-by=video-encoding-create-iam. When a role or policy of the same name exists without that
# tag, it stops before changing anything and says what to do. (The KEDA operator's role with
# MANAGE_KEDA_OPERATOR_ROLE=false is someone else's by definition: it gets our policy attached,
# nothing more, and needs no tag.)
set -euo pipefail
# shellcheck source=scripts/aws/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

: "${K8S_NAMESPACE:=video-encoding}"
: "${ENCODER_SERVICE_ACCOUNT:=encoder}"
: "${PRODUCER_SERVICE_ACCOUNT:=producer}"
: "${KEDA_NAMESPACE:=keda}"
: "${KEDA_SERVICE_ACCOUNT:=keda-operator}"
: "${IDENTITY:=irsa}"
# Only named in the `aws eks create-pod-identity-association` commands printed for IDENTITY=pod-identity.
: "${CLUSTER_NAME:=}"
# The tag that marks what this script created, and so may change.
MANAGED_BY_KEY=managed-by
MANAGED_BY_VALUE=video-encoding-create-iam
# Non-default versions kept per managed policy before a new one is added (IAM allows 5 in all).
POLICY_VERSIONS_KEPT=3

usage() {
    local account=${ACCOUNT_ID:-"(default: from aws sts get-caller-identity)"}
    local oidc=${OIDC_PROVIDER:-"(required on AWS: the EKS cluster's OIDC issuer, without https://)"}
    cat >&2 <<EOF
usage: $0 [--render DIR]

Creates or updates the IAM roles and policies, prints NAME=arn lines.

  --render DIR   only write the rendered trust and permission documents to DIR (one file per
                 document) and change nothing; needs ACCOUNT_ID (and OIDC_PROVIDER for IDENTITY=irsa),
                 calls no AWS API

  IDENTITY                  ${IDENTITY}  (irsa: IAM roles for service accounts; pod-identity: EKS Pod Identity)
  ACCOUNT_ID                ${account}
  OIDC_PROVIDER             ${oidc}  (IDENTITY=irsa only)
  CLUSTER_NAME              ${CLUSTER_NAME:-(unset)}  (IDENTITY=pod-identity: named in the printed association commands)
  AWS_REGION                ${AWS_REGION}
  QUEUE_NAME / DLQ_NAME     ${QUEUE_NAME} / ${DLQ_NAME}
  RESULT_QUEUE_NAME         ${RESULT_QUEUE_NAME}  (the encoder sends completion notices there, the producer reads them)
  INPUT_BUCKET/INPUT_PREFIX   ${INPUT_BUCKET}/${INPUT_PREFIX}
  OUTPUT_BUCKET/OUTPUT_PREFIX ${OUTPUT_BUCKET}/${OUTPUT_PREFIX}
  NAME_PREFIX               ${NAME_PREFIX}  (roles ${NAME_PREFIX}-keda-reader, -encoder, -producer)
  K8S_NAMESPACE             ${K8S_NAMESPACE}  (service accounts ${ENCODER_SERVICE_ACCOUNT}, ${PRODUCER_SERVICE_ACCOUNT}:
                            ENCODER_SERVICE_ACCOUNT, PRODUCER_SERVICE_ACCOUNT)
  KEDA_OPERATOR_ROLE        ${KEDA_OPERATOR_ROLE}  (service account ${KEDA_NAMESPACE}:${KEDA_SERVICE_ACCOUNT}:
                            KEDA_NAMESPACE, KEDA_SERVICE_ACCOUNT)
  MANAGE_KEDA_OPERATOR_ROLE ${MANAGE_KEDA_OPERATOR_ROLE}  (false: the role exists and is someone else's;
                            only our assume-role policy gets attached to it)
  AWS_ENDPOINT_URL          ${AWS_ENDPOINT_URL:-(unset: real AWS)}
EOF
}

render_dir=""
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --render)
            (($# >= 2)) || die "--render needs a directory"
            render_dir=$2
            shift 2
            ;;
        *) usage; die "unknown argument: $1" ;;
    esac
done

# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

validate_queue_name QUEUE_NAME
validate_queue_name DLQ_NAME
validate_result_queue_name
validate_bucket_name INPUT_BUCKET
validate_bucket_name OUTPUT_BUCKET
normalize_prefix INPUT_PREFIX
normalize_prefix OUTPUT_PREFIX
validate_iam_name NAME_PREFIX
validate_iam_name KEDA_OPERATOR_ROLE
validate_k8s_name K8S_NAMESPACE
validate_k8s_name ENCODER_SERVICE_ACCOUNT
validate_k8s_name PRODUCER_SERVICE_ACCOUNT
validate_k8s_name KEDA_NAMESPACE
validate_k8s_name KEDA_SERVICE_ACCOUNT
[[ "$MANAGE_KEDA_OPERATOR_ROLE" == true || "$MANAGE_KEDA_OPERATOR_ROLE" == false ]] ||
    die "MANAGE_KEDA_OPERATOR_ROLE must be true or false, not '$MANAGE_KEDA_OPERATOR_ROLE'"
[[ "$IDENTITY" == irsa || "$IDENTITY" == pod-identity ]] ||
    die "IDENTITY must be irsa or pod-identity, not '$IDENTITY'"
[[ -z "$CLUSTER_NAME" || "$CLUSTER_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$ ]] ||
    die "invalid CLUSTER_NAME '$CLUSTER_NAME': an EKS cluster name (A-Z a-z 0-9 _ -, up to 100)"

# `aws eks describe-cluster --query cluster.identity.oidc.issuer` answers with https:// in front.
OIDC_PROVIDER=${OIDC_PROVIDER:-}
OIDC_PROVIDER=${OIDC_PROVIDER#https://}
if [[ "$IDENTITY" == pod-identity ]]; then
    # Pod Identity needs no OIDC provider: EKS's agent hands out the credentials.
    [[ -z "$OIDC_PROVIDER" ]] || log "IDENTITY=pod-identity: OIDC_PROVIDER is not used"
    OIDC_PROVIDER=""
elif [[ -z "$OIDC_PROVIDER" ]]; then
    if [[ -n "${AWS_ENDPOINT_URL:-}${AWS_ENDPOINT_URL_IAM:-}" && -z "$render_dir" ]]; then
        OIDC_PROVIDER="oidc.eks.${AWS_REGION}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
        log "OIDC_PROVIDER unset, using the placeholder $OIDC_PROVIDER (an emulator is in use)"
    else
        die "OIDC_PROVIDER is required: your EKS cluster's OIDC issuer without https://, e.g." \
            "oidc.eks.${AWS_REGION}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE; get it with" \
            "aws eks describe-cluster --name CLUSTER --query cluster.identity.oidc.issuer --output text"
    fi
fi
[[ "$IDENTITY" == pod-identity || "$OIDC_PROVIDER" =~ ^[A-Za-z0-9.-]+(/[A-Za-z0-9._-]+)*$ ]] ||
    die "invalid OIDC_PROVIDER '$OIDC_PROVIDER': a host name and path, like oidc.eks.REGION.amazonaws.com/id/ID"

if [[ -n "$render_dir" ]]; then
    [[ -n "${ACCOUNT_ID:-}" ]] || die "--render needs ACCOUNT_ID (no AWS call is made to look it up)"
else
    check_aws_access
fi
[[ "$ACCOUNT_ID" =~ ^[0-9]{12}$ ]] || die "invalid ACCOUNT_ID '$ACCOUNT_ID': 12 digits"

QUEUE_ARN="arn:${AWS_PARTITION}:sqs:${AWS_REGION}:${ACCOUNT_ID}:${QUEUE_NAME}"
DLQ_ARN="arn:${AWS_PARTITION}:sqs:${AWS_REGION}:${ACCOUNT_ID}:${DLQ_NAME}"
RESULT_QUEUE_ARN="arn:${AWS_PARTITION}:sqs:${AWS_REGION}:${ACCOUNT_ID}:${RESULT_QUEUE_NAME}"
role_arn() { printf 'arn:%s:iam::%s:role/%s' "$AWS_PARTITION" "$ACCOUNT_ID" "$1"; }
policy_arn() { printf 'arn:%s:iam::%s:policy/%s' "$AWS_PARTITION" "$ACCOUNT_ID" "$1"; }

# ---------------------------------------------------------------------------------------------
# The documents, rendered from scripts/aws/policies/*.json
# ---------------------------------------------------------------------------------------------

# pod_trust NAMESPACE SERVICE_ACCOUNT: only pods of that service account may get the role.
#   irsa:         the service account's web identity (sts:AssumeRoleWithWebIdentity), checked on the
#                 token's sub and aud;
#   pod-identity: EKS's Pod Identity service (sts:AssumeRole, plus sts:TagSession for the session
#                 tags it always sends), checked on the namespace and service-account tags.
pod_trust() {
    if [[ "$IDENTITY" == pod-identity ]]; then
        render_template "$POLICY_DIR/pod-identity-trust.json" \
            SERVICE_ACCOUNT_NAMESPACE="$1" SERVICE_ACCOUNT_NAME="$2"
    else
        render_template "$POLICY_DIR/irsa-trust.json" \
            PARTITION="$AWS_PARTITION" ACCOUNT_ID="$ACCOUNT_ID" OIDC_PROVIDER="$OIDC_PROVIDER" \
            SERVICE_ACCOUNT_NAMESPACE="$1" SERVICE_ACCOUNT_NAME="$2"
    fi
}
keda_operator_trust() { pod_trust "$KEDA_NAMESPACE" "$KEDA_SERVICE_ACCOUNT"; }
keda_operator_policy() { render_template "$POLICY_DIR/keda-operator-policy.json" KEDA_READER_ROLE_ARN="$1"; }
# A Pod Identity session carries transitive session tags (cluster, namespace, service account,
# pod), which STS passes on when the KEDA operator assumes the reader role: that AssumeRole then
# needs sts:TagSession in the reader role's trust too. An IRSA session has none to pass on.
keda_reader_trust() {
    local template=keda-reader-trust.json
    [[ "$IDENTITY" == pod-identity ]] && template=keda-reader-trust-pod-identity.json
    render_template "$POLICY_DIR/$template" KEDA_OPERATOR_ROLE_ARN="$1"
}
keda_reader_policy() { render_template "$POLICY_DIR/keda-reader-policy.json" QUEUE_ARN="$QUEUE_ARN"; }
encoder_trust() { pod_trust "$K8S_NAMESPACE" "$ENCODER_SERVICE_ACCOUNT"; }
encoder_policy() {
    render_template "$POLICY_DIR/encoder-policy.json" \
        PARTITION="$AWS_PARTITION" QUEUE_ARN="$QUEUE_ARN" DLQ_ARN="$DLQ_ARN" \
        RESULT_QUEUE_ARN="$RESULT_QUEUE_ARN" INPUT_BUCKET="$INPUT_BUCKET" INPUT_PREFIX="$INPUT_PREFIX" \
        OUTPUT_BUCKET="$OUTPUT_BUCKET" OUTPUT_PREFIX="$OUTPUT_PREFIX"
}
producer_trust() { pod_trust "$K8S_NAMESPACE" "$PRODUCER_SERVICE_ACCOUNT"; }
producer_policy() {
    render_template "$POLICY_DIR/producer-policy.json" \
        PARTITION="$AWS_PARTITION" QUEUE_ARN="$QUEUE_ARN" RESULT_QUEUE_ARN="$RESULT_QUEUE_ARN" \
        INPUT_BUCKET="$INPUT_BUCKET" INPUT_PREFIX="$INPUT_PREFIX"
}

if [[ -n "$render_dir" ]]; then
    mkdir -p "$render_dir"
    keda_operator_trust >"$render_dir/$KEDA_OPERATOR_ROLE.trust.json"
    keda_operator_policy "$(role_arn "$KEDA_READER_ROLE")" >"$render_dir/$KEDA_OPERATOR_POLICY.policy.json"
    keda_reader_trust "$(role_arn "$KEDA_OPERATOR_ROLE")" >"$render_dir/$KEDA_READER_ROLE.trust.json"
    keda_reader_policy >"$render_dir/$KEDA_READER_POLICY.policy.json"
    encoder_trust >"$render_dir/$ENCODER_ROLE.trust.json"
    encoder_policy >"$render_dir/$ENCODER_POLICY.policy.json"
    producer_trust >"$render_dir/$PRODUCER_ROLE.trust.json"
    producer_policy >"$render_dir/$PRODUCER_POLICY.policy.json"
    log "documents written to $render_dir; nothing changed in AWS"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Applying them
# ---------------------------------------------------------------------------------------------

# Every role and policy created here carries these tags; the first marks it as ours to change.
TAGS=("Key=${MANAGED_BY_KEY},Value=${MANAGED_BY_VALUE}" "Key=name-prefix,Value=${NAME_PREFIX}")

# ensure_role NAME TRUST_FILE DESCRIPTION creates the role (tagged) or resets its trust policy;
# prints its ARN. Only called for roles that check_ours found missing or tagged as ours.
ensure_role() {
    local name=$1 trust=$2 description=$3 arn
    if arn=$(aws_cli iam get-role --role-name "$name" --query Role.Arn --output text 2>"$AWS_ERR"); then
        aws_cli iam update-assume-role-policy --role-name "$name" --policy-document "file://$trust" \
            2>"$AWS_ERR" || aws_fail "cannot update the trust policy of role $name"
        log "role $name exists, trust policy set"
    elif aws_error_is NoSuchEntity; then
        arn=$(aws_cli iam create-role --role-name "$name" --assume-role-policy-document "file://$trust" \
            --description "$description" --tags "${TAGS[@]}" --query Role.Arn --output text 2>"$AWS_ERR") ||
            aws_fail "cannot create role $name"
        log "role $name created"
    else
        aws_fail "cannot look up role $name"
    fi
    printf '%s\n' "$arn"
}

# ownership KIND NAME prints "missing" when there is no such role (KIND role) or managed policy
# (KIND policy), "ours" when it carries our managed-by tag, and "foreign" otherwise.
ownership() {
    local kind=$1 name=$2 value
    local query="Tags[?Key=='${MANAGED_BY_KEY}'].Value"
    local -a read_tags=(list-role-tags --role-name "$name")
    [[ "$kind" == policy ]] && read_tags=(list-policy-tags --policy-arn "$(policy_arn "$name")")
    if ! value=$(aws_cli iam "${read_tags[@]}" --query "$query" --output text 2>"$AWS_ERR"); then
        aws_error_is NoSuchEntity && { echo missing; return 0; }
        aws_fail "cannot read the tags of $kind $name"
    fi
    if [[ "$value" == "$MANAGED_BY_VALUE" ]]; then echo ours; else echo foreign; fi
}

# check_ours collects, before anything is changed, every role and policy this run would modify
# that exists without our tag, and stops with what to do about each. A role of the same name
# made by someone else must not get our trust policy (it could lock its owner out or let our
# pods in), nor a policy of theirs our document.
check_ours() {
    local -a roles=("$KEDA_READER_ROLE" "$ENCODER_ROLE" "$PRODUCER_ROLE") problems=()
    local -a policies=("$KEDA_READER_POLICY" "$KEDA_OPERATOR_POLICY" "$ENCODER_POLICY" "$PRODUCER_POLICY")
    [[ "$MANAGE_KEDA_OPERATOR_ROLE" == true ]] && roles=("$KEDA_OPERATOR_ROLE" "${roles[@]}")
    local name state
    for name in "${roles[@]}"; do
        state=$(ownership role "$name") || exit 1
        [[ "$state" == foreign ]] || continue
        local hint="pick another NAME_PREFIX (now ${NAME_PREFIX})"
        if [[ "$name" == "$KEDA_OPERATOR_ROLE" ]]; then
            hint="if it is your KEDA operator's role, set MANAGE_KEDA_OPERATOR_ROLE=false (our policy is then only attached to it); otherwise set KEDA_OPERATOR_ROLE to another name"
        fi
        problems+=("role $name exists but was not created by this script (no tag ${MANAGED_BY_KEY}=${MANAGED_BY_VALUE}), so its trust policy is not ours to rewrite: $hint; or, if it is really ours (made by an older create-iam.sh), tag it: aws iam tag-role --role-name $name --tags Key=${MANAGED_BY_KEY},Value=${MANAGED_BY_VALUE}")
    done
    for name in "${policies[@]}"; do
        state=$(ownership policy "$name") || exit 1
        [[ "$state" == foreign ]] || continue
        problems+=("policy $name exists but was not created by this script (no tag ${MANAGED_BY_KEY}=${MANAGED_BY_VALUE}), so its document is not ours to replace: pick another NAME_PREFIX (now ${NAME_PREFIX}); or, if it is really ours (made by an older create-iam.sh), tag it: aws iam tag-policy --policy-arn $(policy_arn "$name") --tags Key=${MANAGED_BY_KEY},Value=${MANAGED_BY_VALUE}")
    done
    ((${#problems[@]} == 0)) && return 0
    local problem
    for problem in "${problems[@]}"; do
        printf '[%s] error: %s\n' "$SCRIPT_NAME" "$problem" >&2
    done
    die "nothing was changed"
}

# prune_policy_versions ARN deletes the oldest non-default versions of a managed policy, keeping
# $POLICY_VERSIONS_KEPT, so that one more version fits under IAM's limit of 5.
prune_policy_versions() {
    local arn=$1 versions
    # shellcheck disable=SC2016  # backquotes are a JMESPath literal
    versions=$(aws_cli iam list-policy-versions --policy-arn "$arn" --output text \
        --query 'sort_by(Versions[?IsDefaultVersion==`false`], &CreateDate)[].VersionId' 2>"$AWS_ERR") ||
        aws_fail "cannot list the versions of $arn"
    local -a old
    read -r -a old <<<"$versions"
    local excess=$((${#old[@]} - POLICY_VERSIONS_KEPT)) i
    for ((i = 0; i < excess; i++)); do
        aws_cli iam delete-policy-version --policy-arn "$arn" --version-id "${old[i]}" 2>"$AWS_ERR" ||
            aws_fail "cannot delete version ${old[i]} of $arn"
        log "deleted old version ${old[i]} of $arn"
    done
}

# ensure_policy NAME DOCUMENT_FILE DESCRIPTION creates the managed policy (tagged) or, when its
# default version differs from the document, adds a new default version; prints the policy's ARN.
ensure_policy() {
    local name=$1 document=$2 description=$3
    local arn default current="$TMP_DIR/current.json"
    arn=$(policy_arn "$name")
    if default=$(aws_cli iam get-policy --policy-arn "$arn" --query Policy.DefaultVersionId --output text 2>"$AWS_ERR"); then
        aws_cli iam get-policy-version --policy-arn "$arn" --version-id "$default" \
            --query PolicyVersion.Document --output json >"$current" 2>"$AWS_ERR" ||
            aws_fail "cannot read version $default of $arn"
        if [[ "$(squash "$current")" == "$(squash "$document")" ]]; then
            log "policy $name is up to date ($default)"
        else
            prune_policy_versions "$arn"
            default=$(aws_cli iam create-policy-version --policy-arn "$arn" --policy-document "file://$document" \
                --set-as-default --query PolicyVersion.VersionId --output text 2>"$AWS_ERR") ||
                aws_fail "cannot add a version to $arn"
            log "policy $name updated: $default is now the default version"
        fi
    elif aws_error_is NoSuchEntity; then
        aws_cli iam create-policy --policy-name "$name" --policy-document "file://$document" \
            --description "$description" --tags "${TAGS[@]}" >/dev/null 2>"$AWS_ERR" ||
            aws_fail "cannot create policy $name"
        log "policy $name created"
    else
        aws_fail "cannot look up policy $arn"
    fi
    printf '%s\n' "$arn"
}

attach() {
    local role=$1 arn=$2
    aws_cli iam attach-role-policy --role-name "$role" --policy-arn "$arn" 2>"$AWS_ERR" ||
        aws_fail "cannot attach $arn to role $role"
    log "policy $arn attached to role $role"
}

doc="$TMP_DIR/document.json"
# How the descriptions name the pods' identity.
case "$IDENTITY" in
    irsa) via=IRSA ;;
    pod-identity) via="EKS Pod Identity" ;;
esac

# Without the cluster's OIDC provider registered in IAM, no web identity can assume these roles.
if [[ "$IDENTITY" == irsa ]] && ! aws_cli iam get-open-id-connect-provider \
    --open-id-connect-provider-arn "arn:${AWS_PARTITION}:iam::${ACCOUNT_ID}:oidc-provider/${OIDC_PROVIDER}" \
    >/dev/null 2>"$AWS_ERR"; then
    log "warning: OIDC provider $OIDC_PROVIDER not found in IAM; the roles are created, but pods can" \
        "assume them only once it is registered (eksctl utils associate-iam-oidc-provider --cluster CLUSTER --approve)"
fi

# 0. Refuse, before any change, to touch a role or policy somebody else made.
check_ours

# 1. The KEDA operator's role: first, because the reader role's trust policy names it, and IAM
#    refuses a trust policy whose principal does not exist.
if [[ "$MANAGE_KEDA_OPERATOR_ROLE" == true ]]; then
    keda_operator_trust >"$doc"
    keda_operator_role_arn=$(ensure_role "$KEDA_OPERATOR_ROLE" "$doc" \
        "KEDA operator (${via} ${KEDA_NAMESPACE}:${KEDA_SERVICE_ACCOUNT}); assumes per-workload reader roles")
else
    keda_operator_role_arn=$(aws_cli iam get-role --role-name "$KEDA_OPERATOR_ROLE" --query Role.Arn --output text 2>"$AWS_ERR") ||
        aws_fail "MANAGE_KEDA_OPERATOR_ROLE=false, but role $KEDA_OPERATOR_ROLE cannot be read:" \
            "create it first (or set KEDA_OPERATOR_ROLE to the role your KEDA operator's service account uses)"
    log "role $KEDA_OPERATOR_ROLE is managed elsewhere: its trust policy is left alone"
fi

# 2. The reader role KEDA assumes to read the queue length, and the operator's right to assume it.
keda_reader_trust "$keda_operator_role_arn" >"$doc"
keda_reader_role_arn=$(ensure_role "$KEDA_READER_ROLE" "$doc" \
    "${NAME_PREFIX}: KEDA reads the length of queue ${QUEUE_NAME} (assumed by ${KEDA_OPERATOR_ROLE})")
keda_reader_policy >"$doc"
arn=$(ensure_policy "$KEDA_READER_POLICY" "$doc" "${NAME_PREFIX}: sqs:GetQueueAttributes on ${QUEUE_NAME}")
attach "$KEDA_READER_ROLE" "$arn"

keda_operator_policy "$keda_reader_role_arn" >"$doc"
arn=$(ensure_policy "$KEDA_OPERATOR_POLICY" "$doc" "${NAME_PREFIX}: the KEDA operator may assume ${KEDA_READER_ROLE}")
attach "$KEDA_OPERATOR_ROLE" "$arn"

# 3. The encoder (ScaledJob pods) and the producer.
encoder_trust >"$doc"
encoder_role_arn=$(ensure_role "$ENCODER_ROLE" "$doc" \
    "${NAME_PREFIX}: encoder pods (${via} ${K8S_NAMESPACE}:${ENCODER_SERVICE_ACCOUNT})")
encoder_policy >"$doc"
arn=$(ensure_policy "$ENCODER_POLICY" "$doc" \
    "${NAME_PREFIX}: consume ${QUEUE_NAME}, dead-letter to ${DLQ_NAME}, notify ${RESULT_QUEUE_NAME}, read s3://${INPUT_BUCKET}/${INPUT_PREFIX}, write s3://${OUTPUT_BUCKET}/${OUTPUT_PREFIX}")
attach "$ENCODER_ROLE" "$arn"

producer_trust >"$doc"
producer_role_arn=$(ensure_role "$PRODUCER_ROLE" "$doc" \
    "${NAME_PREFIX}: producer (${via} ${K8S_NAMESPACE}:${PRODUCER_SERVICE_ACCOUNT})")
producer_policy >"$doc"
arn=$(ensure_policy "$PRODUCER_POLICY" "$doc" "${NAME_PREFIX}: send to ${QUEUE_NAME}, read notices from ${RESULT_QUEUE_NAME}, upload to s3://${INPUT_BUCKET}/${INPUT_PREFIX}")
attach "$PRODUCER_ROLE" "$arn"

# With Pod Identity, a role reaches a pod through an association of the cluster, which IAM cannot
# make: print the commands (on stderr, like all progress). The KEDA operator's association is
# needed when we manage its role; with MANAGE_KEDA_OPERATOR_ROLE=false its owner has made one.
if [[ "$IDENTITY" == pod-identity ]]; then
    cluster=${CLUSTER_NAME:-'"$CLUSTER_NAME"'}
    {
        echo "[$SCRIPT_NAME] IDENTITY=pod-identity: associate the roles with the service accounts (once per cluster;"
        echo "[$SCRIPT_NAME] needs the eks-pod-identity-agent add-on), then restart the KEDA operator:"
        if [[ "$MANAGE_KEDA_OPERATOR_ROLE" == true ]]; then
            echo "  aws eks create-pod-identity-association --cluster-name $cluster --namespace $KEDA_NAMESPACE --service-account $KEDA_SERVICE_ACCOUNT --role-arn $keda_operator_role_arn"
        fi
        echo "  aws eks create-pod-identity-association --cluster-name $cluster --namespace $K8S_NAMESPACE --service-account $ENCODER_SERVICE_ACCOUNT --role-arn $encoder_role_arn"
        echo "  aws eks create-pod-identity-association --cluster-name $cluster --namespace $K8S_NAMESPACE --service-account $PRODUCER_SERVICE_ACCOUNT --role-arn $producer_role_arn"
        echo "  kubectl -n $KEDA_NAMESPACE rollout restart deployment keda-operator"
    } >&2
fi

printf 'KEDA_OPERATOR_ROLE_ARN=%s\n' "$keda_operator_role_arn"
printf 'KEDA_READER_ROLE_ARN=%s\n' "$keda_reader_role_arn"
printf 'ENCODER_ROLE_ARN=%s\n' "$encoder_role_arn"
printf 'PRODUCER_ROLE_ARN=%s\n' "$producer_role_arn"
