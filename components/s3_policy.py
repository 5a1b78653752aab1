"""The one bucket policy MLflow's user gets, whoever creates it (bootstrap Job or pulumi-minio)."""

from __future__ import annotations

import json


def bucket_policy(bucket: str) -> str:
    """Only what MLflow's artifact proxy does: list, read, write, delete and multipart in one bucket."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                    "Resource": [f"arn:aws:s3:::{bucket}"],
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    "Resource": [f"arn:aws:s3:::{bucket}/*"],
                },
            ],
        },
        sort_keys=True,
    )


def policy_name(user: str, bucket: str) -> str:
    return f"{user}-{bucket}"
