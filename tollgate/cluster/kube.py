"""Kubernetes API access for code that runs both inside a pod and on a laptop."""

from __future__ import annotations

from tollgate.errors import TollgateError


def _load_credentials() -> None:
    """Use the in-cluster service account, else ~/.kube/config.

    Pipeline pods (the deploy task) have a service account token mounted; a developer's
    shell has a kubeconfig (``kind`` writes one).
    """
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_incluster_config()
    except ConfigException:
        try:
            config.load_kube_config()
        except (ConfigException, FileNotFoundError) as exc:
            raise TollgateError(
                "no Kubernetes credentials: not running in a pod and no usable kubeconfig "
                f"({exc}); create the kind cluster with `make cluster-up` or set KUBECONFIG"
            ) from None


def custom_objects_api():
    """A ``kubernetes.client.CustomObjectsApi`` (InferenceServices)."""
    from kubernetes import client

    _load_credentials()
    return client.CustomObjectsApi()


def apps_v1_api():
    """A ``kubernetes.client.AppsV1Api`` (reading the predictor Deployments a rollout must prove)."""
    from kubernetes import client

    _load_credentials()
    return client.AppsV1Api()
