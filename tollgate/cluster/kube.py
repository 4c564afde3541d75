"""Kubernetes API access for code that runs both inside a pod and on a laptop."""

from __future__ import annotations

from tollgate.errors import TollgateError


def custom_objects_api():
    """A ``kubernetes.client.CustomObjectsApi`` using the in-cluster service account, else ~/.kube/config.

    Pipeline pods (the deploy task) have a service account token mounted; a developer's
    shell has a kubeconfig (``kind`` writes one).
    """
    from kubernetes import client, config
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
    return client.CustomObjectsApi()
