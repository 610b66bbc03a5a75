"""The OpsWorks CM 2016-11-01 service model: operations, shapes, constraints, paginators, waiters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

ShapeType = Literal["structure", "list", "string", "integer", "boolean", "timestamp"]


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a structure: its wire name, its shape and whether it must be present."""

    name: str
    shape: Shape
    required: bool = False
    deprecated: bool = False
    documentation: str = ""


@dataclass(frozen=True, slots=True)
class Shape:
    """A named type of the model with the constraints the service enforces on it."""

    name: str
    type: ShapeType
    members: tuple[Member, ...] = ()
    member: Shape | None = None
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] = ()
    sensitive: bool = False
    exception: bool = False
    documentation: str = ""

    @property
    def required(self) -> tuple[str, ...]:
        """Names of the members that must be present, in member order."""
        return tuple(m.name for m in self.members if m.required)

    def get_member(self, name: str) -> Member | None:
        """The member called `name`, or None."""
        for m in self.members:
            if m.name == name:
                return m
        return None


@dataclass(frozen=True, slots=True)
class Operation:
    """One API operation: `X-Amz-Target: <targetPrefix>.<name>`."""

    name: str
    input: Shape
    output: Shape
    errors: tuple[str, ...]
    documentation: str = ""
    http_method: str = "POST"
    request_uri: str = "/"


@dataclass(frozen=True, slots=True)
class Paginator:
    """How an SDK pages through an operation's results."""

    operation: str
    input_token: str
    output_token: str
    limit_key: str
    result_key: str


@dataclass(frozen=True, slots=True)
class WaiterAcceptor:
    """One outcome a waiter recognises in a response."""

    state: Literal["success", "failure", "retry"]
    matcher: Literal["path", "pathAll", "pathAny", "status", "error"]
    argument: str
    expected: str


@dataclass(frozen=True, slots=True)
class Waiter:
    """An SDK waiter: poll `operation` every `delay` seconds up to `max_attempts` times."""

    name: str
    operation: str
    delay: int
    max_attempts: int
    description: str
    acceptors: tuple[WaiterAcceptor, ...]


@dataclass(frozen=True, slots=True)
class Metadata:
    """Service metadata as the SDKs read it."""

    api_version: str
    endpoint_prefix: str
    json_version: str
    protocol: str
    protocols: tuple[str, ...]
    service_abbreviation: str
    service_full_name: str
    service_id: str
    signature_version: str
    signing_name: str
    target_prefix: str
    uid: str
    auth: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """The whole service: metadata, operations by name, shapes by name, paginators, waiters."""

    metadata: Metadata
    documentation: str
    operations: Mapping[str, Operation]
    shapes: Mapping[str, Shape]
    paginators: Mapping[str, Paginator]
    waiters: Mapping[str, Waiter]


# ---------------------------------------------------------------------------------------------
# Shape builders
# ---------------------------------------------------------------------------------------------


def _string(
    name: str,
    *,
    min: int | None = None,
    max: int | None = None,
    pattern: str | None = None,
    enum: tuple[str, ...] = (),
    sensitive: bool = False,
    doc: str = "",
) -> Shape:
    return Shape(
        name, "string", min=min, max=max, pattern=pattern, enum=enum, sensitive=sensitive,
        documentation=doc,
    )


def _integer(name: str, *, min: int | None = None, doc: str = "") -> Shape:
    return Shape(name, "integer", min=min, documentation=doc)


def _list(
    name: str,
    member: Shape,
    *,
    min: int | None = None,
    max: int | None = None,
    doc: str = "",
) -> Shape:
    return Shape(name, "list", member=member, min=min, max=max, documentation=doc)


def _structure(name: str, *members: Member, doc: str = "") -> Shape:
    return Shape(name, "structure", members=members, documentation=doc)


def _exception(name: str, doc: str) -> Shape:
    return Shape(
        name, "structure", exception=True, documentation=doc,
        members=(_opt("Message", STRING, "A message that describes the error."),),
    )


def _req(name: str, shape: Shape, doc: str) -> Member:
    return Member(name, shape, required=True, documentation=doc)


def _opt(name: str, shape: Shape, doc: str, *, deprecated: bool = False) -> Member:
    return Member(name, shape, deprecated=deprecated, documentation=doc)


# ---------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------

ANY_TEXT = r"(?s).*"

STRING = _string("String", max=10000, pattern=ANY_TEXT)
BOOLEAN = Shape("Boolean", "boolean")
INTEGER = Shape("Integer", "integer")
TIMESTAMP = Shape("Timestamp", "timestamp")

SERVER_NAME = _string("ServerName", min=1, max=40, pattern=r"[a-zA-Z][a-zA-Z0-9\-]*")
BACKUP_ID = _string("BackupId", max=79, pattern=r"[a-zA-Z][a-zA-Z0-9\-\.\:]*")
NODE_NAME = _string("NodeName", max=10000, pattern=r"^[\-\p{Alnum}_:.]+$")
NEXT_TOKEN = _string("NextToken", max=10000, pattern=ANY_TEXT)
MAX_RESULTS = _integer("MaxResults", min=1)
NODE_ASSOCIATION_STATUS_TOKEN = _string("NodeAssociationStatusToken", max=10000, pattern=ANY_TEXT)
ATTRIBUTE_NAME = _string("AttributeName", min=1, max=64, pattern=r"[A-Z][A-Z0-9_]*")
ATTRIBUTE_VALUE = _string("AttributeValue", max=10000, pattern=ANY_TEXT)
ENGINE_ATTRIBUTE_NAME = _string("EngineAttributeName", max=10000, pattern=ANY_TEXT)
ENGINE_ATTRIBUTE_VALUE = _string(
    "EngineAttributeValue", max=10000, pattern=ANY_TEXT, sensitive=True
)
INSTANCE_PROFILE_ARN = _string(
    "InstanceProfileArn", max=10000, pattern=r"arn:aws:iam::[0-9]{12}:instance-profile/.*"
)
SERVICE_ROLE_ARN = _string("ServiceRoleArn", max=10000, pattern=r"arn:aws:iam::[0-9]{12}:role/.*")
KEY_PAIR = _string("KeyPair", max=10000, pattern=r".*")
TIME_WINDOW_DEFINITION = _string(
    "TimeWindowDefinition",
    max=10000,
    pattern=r"^((Mon|Tue|Wed|Thu|Fri|Sat|Sun):)?([0-1][0-9]|2[0-3]):[0-5][0-9]$",
    doc="A weekly (DDD:HH:MM) or daily (HH:MM) start time in UTC.",
)
BACKUP_RETENTION_COUNT_DEFINITION = _integer("BackupRetentionCountDefinition", min=1)
CUSTOM_DOMAIN = _string(
    "CustomDomain",
    max=253,
    pattern=r"^(((?!-)[A-Za-z0-9-]{0,62}[A-Za-z0-9])\.)+((?!-)[A-Za-z0-9-]{1,62}[A-Za-z0-9])$",
)
CUSTOM_CERTIFICATE = _string(
    "CustomCertificate",
    max=2097152,
    pattern=r"(?s)\s*-----BEGIN CERTIFICATE-----.+-----END CERTIFICATE-----\s*",
)
CUSTOM_PRIVATE_KEY = _string(
    "CustomPrivateKey",
    max=4096,
    pattern=(
        r"(?ms)\s*^-----BEGIN (?-s:.*)PRIVATE KEY-----$.*?"
        r"^-----END (?-s:.*)PRIVATE KEY-----$\s*"
    ),
    sensitive=True,
)
RESOURCE_ARN = _string("AWSOpsWorksCMResourceArn", pattern=r"arn:aws.*:opsworks-cm:.*:[0-9]{12}:.*")
TAG_KEY = _string("TagKey", min=1, max=128, pattern=r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$")
TAG_VALUE = _string("TagValue", min=0, max=256, pattern=r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$")

BACKUP_STATUS = _string("BackupStatus", enum=("IN_PROGRESS", "OK", "FAILED", "DELETING"))
BACKUP_TYPE = _string("BackupType", enum=("AUTOMATED", "MANUAL"))
MAINTENANCE_STATUS = _string("MaintenanceStatus", enum=("SUCCESS", "FAILED"))
NODE_ASSOCIATION_STATUS = _string(
    "NodeAssociationStatus", enum=("SUCCESS", "FAILED", "IN_PROGRESS")
)
SERVER_STATUS = _string(
    "ServerStatus",
    enum=(
        "BACKING_UP", "CONNECTION_LOST", "CREATING", "DELETING", "MODIFYING", "FAILED",
        "HEALTHY", "RUNNING", "RESTORING", "SETUP", "UNDER_MAINTENANCE", "UNHEALTHY",
        "TERMINATED",
    ),
)

# ---------------------------------------------------------------------------------------------
# Compound shapes
# ---------------------------------------------------------------------------------------------

STRINGS = _list("Strings", STRING)

TAG = _structure(
    "Tag",
    _req("Key", TAG_KEY, "The tag key: up to 128 letters, numbers, spaces and _.:/=+-@."),
    _req("Value", TAG_VALUE, "The tag value: up to 256 letters, numbers, spaces and _.:/=+-@."),
    doc="A key-value pair attached to a server or a backup.",
)
TAG_LIST = _list("TagList", TAG, min=0, max=200)
TAG_KEY_LIST = _list("TagKeyList", TAG_KEY, min=0, max=200)

ENGINE_ATTRIBUTE = _structure(
    "EngineAttribute",
    _opt("Name", ENGINE_ATTRIBUTE_NAME, "The name of the engine attribute."),
    _opt("Value", ENGINE_ATTRIBUTE_VALUE, "The value of the engine attribute."),
    doc="A name-value pair specific to the server's engine.",
)
ENGINE_ATTRIBUTES = _list("EngineAttributes", ENGINE_ATTRIBUTE)

ACCOUNT_ATTRIBUTE = _structure(
    "AccountAttribute",
    _opt("Name", STRING, "The attribute name, such as ServerLimit or ManualBackupLimit."),
    _opt("Maximum", INTEGER, "The maximum allowed value of the attribute."),
    _opt("Used", INTEGER, "How much of the maximum is currently in use."),
    doc="A limit of the account and how much of it is used.",
)
ACCOUNT_ATTRIBUTES = _list("AccountAttributes", ACCOUNT_ATTRIBUTE)

BACKUP = _structure(
    "Backup",
    _opt("BackupArn", STRING, "The ARN of the backup."),
    _opt("BackupId", BACKUP_ID, "The ID of the backup, ServerName-yyyyMMddHHmmssSSS."),
    _opt("BackupType", BACKUP_TYPE, "Whether the backup was AUTOMATED or MANUAL."),
    _opt("CreatedAt", TIMESTAMP, "When the backup was created."),
    _opt("Description", STRING, "The user-defined description of the backup."),
    _opt("Engine", STRING, "The engine of the backed-up server."),
    _opt("EngineModel", STRING, "The engine model of the backed-up server."),
    _opt("EngineVersion", STRING, "The engine version of the backed-up server."),
    _opt("InstanceProfileArn", STRING, "The instance profile ARN of the backed-up server."),
    _opt("InstanceType", STRING, "The instance type of the backed-up server."),
    _opt("KeyPair", STRING, "The key pair of the backed-up server."),
    _opt("PreferredBackupWindow", TIME_WINDOW_DEFINITION, "The server's backup window."),
    _opt(
        "PreferredMaintenanceWindow", TIME_WINDOW_DEFINITION, "The server's maintenance window."
    ),
    _opt("S3DataSize", INTEGER, "Deprecated and no longer returned.", deprecated=True),
    _opt("S3DataUrl", STRING, "Deprecated and no longer returned.", deprecated=True),
    _opt("S3LogUrl", STRING, "Where the backup's log is stored."),
    _opt("SecurityGroupIds", STRINGS, "The security group IDs of the backed-up server."),
    _opt("ServerName", SERVER_NAME, "The name of the server the backup belongs to."),
    _opt("ServiceRoleArn", STRING, "The service role ARN of the backed-up server."),
    _opt("Status", BACKUP_STATUS, "The state of the backup."),
    _opt("StatusDescription", STRING, "An informational message about the state."),
    _opt("SubnetIds", STRINGS, "The subnet IDs of the backed-up server."),
    _opt("ToolsVersion", STRING, "The version of the tools that made the backup."),
    _opt("UserArn", STRING, "The ARN of the principal that requested the backup."),
    doc="An application-level backup of a server.",
)
BACKUPS = _list("Backups", BACKUP)

SERVER = _structure(
    "Server",
    _opt("AssociatePublicIpAddress", BOOLEAN, "Whether the server has a public IP address."),
    _opt("BackupRetentionCount", INTEGER, "How many automated backups are kept."),
    _opt("ServerName", STRING, "The name of the server."),
    _opt("CreatedAt", TIMESTAMP, "When the server was created."),
    _opt("CloudFormationStackArn", STRING, "The ARN of the stack that runs the server."),
    _opt("CustomDomain", CUSTOM_DOMAIN, "The custom domain of the server, if any."),
    _opt("DisableAutomatedBackup", BOOLEAN, "Whether scheduled backups are turned off."),
    _opt("Endpoint", STRING, "The DNS name nodes and tools use to reach the server."),
    _opt("Engine", STRING, "The engine of the server: ChefAutomate or Puppet."),
    _opt("EngineModel", STRING, "The engine model: Single (Chef) or Monolithic (Puppet)."),
    _opt("EngineAttributes", ENGINE_ATTRIBUTES, "Engine-specific attributes of the server."),
    _opt("EngineVersion", STRING, "The engine version of the server."),
    _opt("InstanceProfileArn", STRING, "The instance profile ARN of the server."),
    _opt("InstanceType", STRING, "The instance type of the server."),
    _opt("KeyPair", STRING, "The key pair set on the server's instance."),
    _opt("MaintenanceStatus", MAINTENANCE_STATUS, "The outcome of the last maintenance."),
    _opt(
        "PreferredMaintenanceWindow", TIME_WINDOW_DEFINITION, "The weekly maintenance window."
    ),
    _opt("PreferredBackupWindow", TIME_WINDOW_DEFINITION, "The automated backup window."),
    _opt("SecurityGroupIds", STRINGS, "The security group IDs of the server."),
    _opt("ServiceRoleArn", STRING, "The service role the service uses for the server."),
    _opt("Status", SERVER_STATUS, "The state of the server."),
    _opt("StatusReason", STRING, "Why the server is in its state, when it failed."),
    _opt("SubnetIds", STRINGS, "The subnet IDs of the server."),
    _opt("ServerArn", STRING, "The ARN of the server."),
    doc="A configuration management server.",
)
SERVERS = _list("Servers", SERVER)

SERVER_EVENT = _structure(
    "ServerEvent",
    _opt("CreatedAt", TIMESTAMP, "When the event happened."),
    _opt("ServerName", STRING, "The name of the server the event is about."),
    _opt("Message", STRING, "What happened."),
    _opt("LogUrl", STRING, "Where a log of the event is stored, if any."),
    doc="Something that happened to a server.",
)
SERVER_EVENTS = _list("ServerEvents", SERVER_EVENT)

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

ERROR_SHAPES: tuple[Shape, ...] = (
    _exception("InvalidNextTokenException", "The NextToken is not valid."),
    _exception(
        "InvalidStateException", "The resource's state does not allow the requested action."
    ),
    _exception("LimitExceededException", "The limit of servers or backups has been reached."),
    _exception(
        "ResourceAlreadyExistsException", "The resource cannot be created: it already exists."
    ),
    _exception(
        "ResourceNotFoundException", "The resource does not exist, or access was denied."
    ),
    _exception("ValidationException", "One or more request parameters are not valid."),
)

# ---------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------

_SERVER_DOC = "The server as it is after the request."
_EMPTY = "Nothing: success has no payload."


def _operation(
    name: str, doc: str, input: Shape, output: Shape, *errors: str
) -> Operation:
    return Operation(name, input, output, errors, documentation=doc)


OPERATIONS: tuple[Operation, ...] = (
    _operation(
        "AssociateNode",
        "Associates a new node with a HEALTHY server and returns a token to poll its status.",
        _structure(
            "AssociateNodeRequest",
            _req("ServerName", SERVER_NAME, "The server to associate the node with."),
            _req("NodeName", NODE_NAME, "The name of the node."),
            _req(
                "EngineAttributes", ENGINE_ATTRIBUTES,
                "The node's CHEF_ORGANIZATION and CHEF_NODE_PUBLIC_KEY, or its PUPPET_NODE_CSR.",
            ),
        ),
        _structure(
            "AssociateNodeResponse",
            _opt(
                "NodeAssociationStatusToken", NODE_ASSOCIATION_STATUS_TOKEN,
                "A token to pass to DescribeNodeAssociationStatus.",
            ),
        ),
        "InvalidStateException", "ResourceNotFoundException", "ValidationException",
    ),
    _operation(
        "CreateBackup",
        "Starts an application-level manual backup of a server.",
        _structure(
            "CreateBackupRequest",
            _req("ServerName", SERVER_NAME, "The server to back up."),
            _opt("Description", STRING, "A user-defined description of the backup."),
            _opt("Tags", TAG_LIST, "Tags to attach to the backup, besides the server's own."),
        ),
        _structure("CreateBackupResponse", _opt("Backup", BACKUP, "The backup being created.")),
        "InvalidStateException", "LimitExceededException", "ResourceNotFoundException",
        "ValidationException",
    ),
    _operation(
        "CreateServer",
        "Creates and starts a new server, which is ready to use once HEALTHY.",
        _structure(
            "CreateServerRequest",
            _opt(
                "AssociatePublicIpAddress", BOOLEAN,
                "Whether the server gets a public IP address (default true).",
            ),
            _opt("CustomDomain", CUSTOM_DOMAIN, "A custom domain name for the server endpoint."),
            _opt(
                "CustomCertificate", CUSTOM_CERTIFICATE,
                "A PEM certificate (chain) for CustomDomain.",
            ),
            _opt(
                "CustomPrivateKey", CUSTOM_PRIVATE_KEY,
                "The unencrypted PEM private key of CustomCertificate.",
            ),
            _opt("DisableAutomatedBackup", BOOLEAN, "Turns scheduled backups off."),
            _req("Engine", STRING, "The engine to run: ChefAutomate or Puppet."),
            _opt("EngineModel", STRING, "The engine model: Single (Chef) or Monolithic (Puppet)."),
            _opt("EngineVersion", STRING, "The major engine version, such as 2 or 2019."),
            _opt(
                "EngineAttributes", ENGINE_ATTRIBUTES,
                "Engine-specific attributes such as the pivotal key or the admin password.",
            ),
            _opt(
                "BackupRetentionCount", BACKUP_RETENTION_COUNT_DEFINITION,
                "How many automated backups to keep (default 1).",
            ),
            _req("ServerName", SERVER_NAME, "A name for the server, unique in account and region."),
            _req(
                "InstanceProfileArn", INSTANCE_PROFILE_ARN,
                "The instance profile the server's instance uses.",
            ),
            _req("InstanceType", STRING, "The instance type, such as m5.large."),
            _opt("KeyPair", KEY_PAIR, "A key pair for SSH access to the instance."),
            _opt(
                "PreferredMaintenanceWindow", TIME_WINDOW_DEFINITION,
                "The weekly maintenance start time, DDD:HH:MM in UTC.",
            ),
            _opt(
                "PreferredBackupWindow", TIME_WINDOW_DEFINITION,
                "The backup start time, HH:MM daily or DDD:HH:MM weekly, in UTC.",
            ),
            _opt("SecurityGroupIds", STRINGS, "Security groups to attach to the instance."),
            _req(
                "ServiceRoleArn", SERVICE_ROLE_ARN,
                "The role the service uses to work in the account.",
            ),
            _opt("SubnetIds", STRINGS, "Subnets to launch the instance in."),
            _opt("Tags", TAG_LIST, "Tags to attach to the server and its backups."),
            _opt("BackupId", BACKUP_ID, "A backup to create the server from."),
        ),
        _structure("CreateServerResponse", _opt("Server", SERVER, "The server being created.")),
        "LimitExceededException", "ResourceAlreadyExistsException", "ResourceNotFoundException",
        "ValidationException",
    ),
    _operation(
        "DeleteBackup",
        "Deletes a manual or automated backup.",
        _structure(
            "DeleteBackupRequest", _req("BackupId", BACKUP_ID, "The ID of the backup to delete.")
        ),
        _structure("DeleteBackupResponse", doc=_EMPTY),
        "InvalidStateException", "ResourceNotFoundException", "ValidationException",
    ),
    _operation(
        "DeleteServer",
        "Deletes a server together with its events and automated backups.",
        _structure(
            "DeleteServerRequest", _req("ServerName", SERVER_NAME, "The server to delete.")
        ),
        _structure("DeleteServerResponse", doc=_EMPTY),
        "InvalidStateException", "ResourceNotFoundException", "ValidationException",
    ),
    _operation(
        "DescribeAccountAttributes",
        "Describes the account's limits and how much of them is in use.",
        _structure("DescribeAccountAttributesRequest"),
        _structure(
            "DescribeAccountAttributesResponse",
            _opt("Attributes", ACCOUNT_ATTRIBUTES, "The attributes of the account."),
        ),
    ),
    _operation(
        "DescribeBackups",
        "Describes backups, newest first, optionally of one server or one backup ID.",
        _structure(
            "DescribeBackupsRequest",
            _opt("BackupId", BACKUP_ID, "Describe only this backup."),
            _opt("ServerName", SERVER_NAME, "Describe only this server's backups."),
            _opt("NextToken", NEXT_TOKEN, "The token of a previous page, to get the next one."),
            _opt("MaxResults", MAX_RESULTS, "The largest number of backups to return."),
        ),
        _structure(
            "DescribeBackupsResponse",
            _opt("Backups", BACKUPS, "The backups found."),
            _opt("NextToken", STRING, "A token for the next page, absent on the last page."),
        ),
        "ValidationException", "ResourceNotFoundException", "InvalidNextTokenException",
    ),
    _operation(
        "DescribeEvents",
        "Describes the events of a server, newest first.",
        _structure(
            "DescribeEventsRequest",
            _req("ServerName", SERVER_NAME, "The server whose events to describe."),
            _opt("NextToken", NEXT_TOKEN, "The token of a previous page, to get the next one."),
            _opt("MaxResults", MAX_RESULTS, "The largest number of events to return."),
        ),
        _structure(
            "DescribeEventsResponse",
            _opt("ServerEvents", SERVER_EVENTS, "The events found."),
            _opt("NextToken", STRING, "A token for the next page, absent on the last page."),
        ),
        "ValidationException", "InvalidNextTokenException", "ResourceNotFoundException",
    ),
    _operation(
        "DescribeNodeAssociationStatus",
        "Returns the status of a node association or disassociation request.",
        _structure(
            "DescribeNodeAssociationStatusRequest",
            _req(
                "NodeAssociationStatusToken", NODE_ASSOCIATION_STATUS_TOKEN,
                "The token AssociateNode or DisassociateNode returned.",
            ),
            _req("ServerName", SERVER_NAME, "The server the request was made to."),
        ),
        _structure(
            "DescribeNodeAssociationStatusResponse",
            _opt(
                "NodeAssociationStatus", NODE_ASSOCIATION_STATUS,
                "SUCCESS, FAILED or IN_PROGRESS.",
            ),
            _opt(
                "EngineAttributes", ENGINE_ATTRIBUTES,
                "Results of the association, such as the signed PUPPET_NODE_CERT.",
            ),
        ),
        "ResourceNotFoundException", "ValidationException",
    ),
    _operation(
        "DescribeServers",
        "Describes the account's servers, or one server by name.",
        _structure(
            "DescribeServersRequest",
            _opt("ServerName", SERVER_NAME, "Describe only this server."),
            _opt("NextToken", NEXT_TOKEN, "The token of a previous page, to get the next one."),
            _opt("MaxResults", MAX_RESULTS, "The largest number of servers to return."),
        ),
        _structure(
            "DescribeServersResponse",
            _opt("Servers", SERVERS, "The servers found."),
            _opt("NextToken", STRING, "A token for the next page, absent on the last page."),
        ),
        "ValidationException", "ResourceNotFoundException", "InvalidNextTokenException",
    ),
    _operation(
        "DisassociateNode",
        "Disassociates a node from a server and returns a token to poll its status.",
        _structure(
            "DisassociateNodeRequest",
            _req("ServerName", SERVER_NAME, "The server to disassociate the node from."),
            _req("NodeName", NODE_NAME, "The name of the node."),
            _opt(
                "EngineAttributes", ENGINE_ATTRIBUTES,
                "Engine-specific attributes, such as CHEF_ORGANIZATION.",
            ),
        ),
        _structure(
            "DisassociateNodeResponse",
            _opt(
                "NodeAssociationStatusToken", NODE_ASSOCIATION_STATUS_TOKEN,
                "A token to pass to DescribeNodeAssociationStatus.",
            ),
        ),
        "InvalidStateException", "ResourceNotFoundException", "ValidationException",
    ),
    _operation(
        "ExportServerEngineAttribute",
        "Exports a server engine attribute, such as node user data, as a base64 string.",
        _structure(
            "ExportServerEngineAttributeRequest",
            _req("ExportAttributeName", STRING, "The attribute to export; Userdata is supported."),
            _req("ServerName", SERVER_NAME, "The server to export the attribute from."),
            _opt(
                "InputAttributes", ENGINE_ATTRIBUTES,
                "Inputs such as RunList, OrganizationName, NodeEnvironment, NodeClientVersion.",
            ),
        ),
        _structure(
            "ExportServerEngineAttributeResponse",
            _opt("EngineAttribute", ENGINE_ATTRIBUTE, "The exported attribute."),
            _opt("ServerName", SERVER_NAME, "The server the attribute was exported from."),
        ),
        "ValidationException", "ResourceNotFoundException", "InvalidStateException",
    ),
    _operation(
        "ListTagsForResource",
        "Lists the tags of a server or a backup.",
        _structure(
            "ListTagsForResourceRequest",
            _req("ResourceArn", RESOURCE_ARN, "The ARN of the server or backup."),
            _opt("NextToken", NEXT_TOKEN, "The token of a previous page, to get the next one."),
            _opt("MaxResults", MAX_RESULTS, "The largest number of tags to return."),
        ),
        _structure(
            "ListTagsForResourceResponse",
            _opt("Tags", TAG_LIST, "The tags of the resource."),
            _opt("NextToken", NEXT_TOKEN, "A token for the next page, absent on the last page."),
        ),
        "ResourceNotFoundException", "ValidationException",
    ),
    _operation(
        "RestoreServer",
        "Restores a server from one of its backups, keeping its endpoint.",
        _structure(
            "RestoreServerRequest",
            _req("BackupId", BACKUP_ID, "The backup to restore from."),
            _req("ServerName", SERVER_NAME, "The server to restore."),
            _opt("InstanceType", STRING, "A new instance type for the restored server."),
            _opt("KeyPair", KEY_PAIR, "A new key pair for the restored server."),
        ),
        _structure("RestoreServerResponse", _opt("Server", SERVER, _SERVER_DOC)),
        "InvalidStateException", "ResourceNotFoundException", "ValidationException",
    ),
    _operation(
        "StartMaintenance",
        "Starts maintenance of a server now, outside its maintenance window.",
        _structure(
            "StartMaintenanceRequest",
            _req("ServerName", SERVER_NAME, "The server to maintain."),
            _opt(
                "EngineAttributes", ENGINE_ATTRIBUTES,
                "Maintenance options, such as CHEF_MAJOR_UPGRADE.",
            ),
        ),
        _structure("StartMaintenanceResponse", _opt("Server", SERVER, _SERVER_DOC)),
        "InvalidStateException", "ResourceNotFoundException", "ValidationException",
    ),
    _operation(
        "TagResource",
        "Adds tags to a server or a backup, replacing values of existing keys.",
        _structure(
            "TagResourceRequest",
            _req("ResourceArn", RESOURCE_ARN, "The ARN of the server or backup."),
            _req("Tags", TAG_LIST, "The tags to add."),
        ),
        _structure("TagResourceResponse", doc=_EMPTY),
        "ResourceNotFoundException", "ValidationException", "InvalidStateException",
    ),
    _operation(
        "UntagResource",
        "Removes tags from a server or a backup.",
        _structure(
            "UntagResourceRequest",
            _req("ResourceArn", RESOURCE_ARN, "The ARN of the server or backup."),
            _req("TagKeys", TAG_KEY_LIST, "The keys of the tags to remove."),
        ),
        _structure("UntagResourceResponse", doc=_EMPTY),
        "ResourceNotFoundException", "ValidationException", "InvalidStateException",
    ),
    _operation(
        "UpdateServer",
        "Updates the backup and maintenance settings of a server.",
        _structure(
            "UpdateServerRequest",
            _opt("DisableAutomatedBackup", BOOLEAN, "Turns scheduled backups off or on."),
            _opt("BackupRetentionCount", INTEGER, "How many automated backups to keep."),
            _req("ServerName", SERVER_NAME, "The server to update."),
            _opt(
                "PreferredMaintenanceWindow", TIME_WINDOW_DEFINITION,
                "The new weekly maintenance start time.",
            ),
            _opt(
                "PreferredBackupWindow", TIME_WINDOW_DEFINITION, "The new backup start time."
            ),
        ),
        _structure("UpdateServerResponse", _opt("Server", SERVER, _SERVER_DOC)),
        "InvalidStateException", "ResourceNotFoundException", "ValidationException",
    ),
    _operation(
        "UpdateServerEngineAttributes",
        "Resets a Chef server's pivotal key or a Puppet server's admin password.",
        _structure(
            "UpdateServerEngineAttributesRequest",
            _req("ServerName", SERVER_NAME, "The server to update."),
            _req("AttributeName", ATTRIBUTE_NAME, "The engine attribute to update."),
            _opt("AttributeValue", ATTRIBUTE_VALUE, "The new value of the attribute."),
        ),
        _structure(
            "UpdateServerEngineAttributesResponse", _opt("Server", SERVER, _SERVER_DOC)
        ),
        "InvalidStateException", "ResourceNotFoundException", "ValidationException",
    ),
)

# ---------------------------------------------------------------------------------------------
# Paginators and waiters
# ---------------------------------------------------------------------------------------------

PAGINATORS: tuple[Paginator, ...] = (
    Paginator("DescribeBackups", "NextToken", "NextToken", "MaxResults", "Backups"),
    Paginator("DescribeEvents", "NextToken", "NextToken", "MaxResults", "ServerEvents"),
    Paginator("DescribeServers", "NextToken", "NextToken", "MaxResults", "Servers"),
    Paginator("ListTagsForResource", "NextToken", "NextToken", "MaxResults", "Tags"),
)

WAITERS: tuple[Waiter, ...] = (
    Waiter(
        name="NodeAssociated",
        operation="DescribeNodeAssociationStatus",
        delay=15,
        max_attempts=15,
        description="Wait until node is associated or disassociated.",
        acceptors=(
            WaiterAcceptor("success", "path", "NodeAssociationStatus", "SUCCESS"),
            WaiterAcceptor("failure", "path", "NodeAssociationStatus", "FAILED"),
        ),
    ),
)

METADATA = Metadata(
    api_version="2016-11-01",
    endpoint_prefix="opsworks-cm",
    json_version="1.1",
    protocol="json",
    protocols=("json",),
    service_abbreviation="OpsWorksCM",
    service_full_name="AWS OpsWorks CM",
    service_id="OpsWorksCM",
    signature_version="v4",
    signing_name="opsworks-cm",
    target_prefix="OpsWorksCM_V2016_11_01",
    uid="opsworkscm-2016-11-01",
    auth=("aws.auth#sigv4",),
)

SERVICE_DOCUMENTATION = (
    "OpsWorks CM runs and manages Chef Automate and Puppet Enterprise servers and the nodes "
    "they manage; this model is served by cmhost."
)


def _collect_shapes(roots: Iterable[Shape]) -> dict[str, Shape]:
    """Every shape reachable from `roots`, by name; two different shapes may not share a name."""
    found: dict[str, Shape] = {}
    pending = list(roots)
    while pending:
        shape = pending.pop()
        known = found.get(shape.name)
        if known is not None:
            if known != shape:
                raise ValueError(f"two different shapes are named {shape.name}")
            continue
        found[shape.name] = shape
        pending.extend(m.shape for m in shape.members)
        if shape.member is not None:
            pending.append(shape.member)
    return dict(sorted(found.items()))


def build_service() -> ServiceModel:
    """Assemble and check the service model from the definitions above."""
    operations = {op.name: op for op in OPERATIONS}
    roots = [s for op in OPERATIONS for s in (op.input, op.output)]
    shapes = _collect_shapes([*roots, *ERROR_SHAPES])
    for op in OPERATIONS:
        for error in op.errors:
            if error not in shapes or not shapes[error].exception:
                raise ValueError(f"{op.name} names unknown error shape {error}")
    for p in PAGINATORS:
        if p.operation not in operations:
            raise ValueError(f"paginator for unknown operation {p.operation}")
    for w in WAITERS:
        if w.operation not in operations:
            raise ValueError(f"waiter {w.name} polls unknown operation {w.operation}")
    return ServiceModel(
        metadata=METADATA,
        documentation=SERVICE_DOCUMENTATION,
        operations=MappingProxyType(dict(sorted(operations.items()))),
        shapes=MappingProxyType(shapes),
        paginators=MappingProxyType({p.operation: p for p in PAGINATORS}),
        waiters=MappingProxyType({w.name: w for w in WAITERS}),
    )


SERVICE: ServiceModel = build_service()
