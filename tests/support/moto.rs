//! moto (`moto_server` from the test venv), the AWS APIs: Secrets Manager and STS, and
//! IAM enforced on request.

use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{free_port, venv_bin, wait_http};

/// `moto_server` on a free port; killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl Moto {
    pub async fn start() -> Moto {
        Moto::start_with_env(&[]).await
    }

    async fn start_with_env(env: &[(&str, String)]) -> Moto {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(venv_bin("moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto_server");
            let url = format!("http://127.0.0.1:{port}");
            if wait_http(&format!("{url}/moto-api/"), "moto", &mut child).await {
                return Moto { child, port, url };
            }
        }
        panic!("moto did not start");
    }

    /// moto that enforces IAM once it is set up: a role `role` whose only permission is
    /// `allowed_action` (on every resource), and `secrets` created. Returns the role ARN.
    ///
    /// moto authorizes every action after the first `INITIAL_NO_AUTH_ACTION_COUNT`, and
    /// cannot handle an unsigned call once it does, so the count is the setup actions
    /// plus one: the `AssumeRoleWithWebIdentity` of the single init run that follows.
    /// Everything that run does afterwards is signed with the role's session keys and
    /// checked against the role's policy.
    pub async fn start_enforcing(
        role: &str,
        allowed_action: &str,
        secrets: &[(&str, &str)],
    ) -> (Moto, String) {
        Moto::start_enforcing_with(role, allowed_action, secrets, &[]).await
    }

    /// [`Moto::start_enforcing`] with SSM `parameters` (SecureStrings) created as well.
    pub async fn start_enforcing_with(
        role: &str,
        allowed_action: &str,
        secrets: &[(&str, &str)],
        parameters: &[(&str, &str)],
    ) -> (Moto, String) {
        let free = 2 + secrets.len() + parameters.len() + 1;
        let moto =
            Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", free.to_string())]).await;
        let map = |pairs: &[(&str, &str)]| -> Value {
            Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect(),
            )
        };
        let out = Command::new(venv_bin("python"))
            .args([
                "-c",
                MOTO_IAM_SETUP,
                &moto.url,
                role,
                allowed_action,
                &map(secrets).to_string(),
                &map(parameters).to_string(),
            ])
            .output()
            .expect("run the venv's python");
        assert!(
            out.status.success(),
            "moto IAM setup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let arn = String::from_utf8(out.stdout).unwrap().trim().to_string();
        (moto, arn)
    }

    /// A Secrets Manager client with static test keys.
    pub async fn client(&self) -> aws_sdk_secretsmanager::Client {
        let creds =
            aws_sdk_secretsmanager::config::Credentials::new("test", "test", None, None, "tests");
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(creds)
            .load()
            .await;
        aws_sdk_secretsmanager::Client::new(&config)
    }

    /// A Parameter Store client with static test keys.
    pub async fn ssm(&self) -> aws_sdk_ssm::Client {
        let creds = aws_sdk_ssm::config::Credentials::new("test", "test", None, None, "tests");
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(creds)
            .load()
            .await;
        aws_sdk_ssm::Client::new(&config)
    }

    /// Put a parameter (a new version when it exists); returns its version.
    pub async fn put_parameter(&self, name: &str, value: &str, secure: bool) -> i64 {
        use aws_sdk_ssm::types::ParameterType;
        let kind = if secure {
            ParameterType::SecureString
        } else {
            ParameterType::String
        };
        self.ssm()
            .await
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .overwrite(true)
            .send()
            .await
            .unwrap()
            .version
    }

    /// Put a new version of a secret; returns its version id.
    pub async fn put(&self, name: &str, value: &str) -> String {
        let out = self
            .client()
            .await
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
        out.version_id.unwrap()
    }

    /// Create a secret; returns its ARN.
    pub async fn create(&self, name: &str, value: &str) -> String {
        let out = self
            .client()
            .await
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
        out.arn.unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exactly `2 + len(secrets) + len(parameters)` moto actions: CreateRole, PutRolePolicy,
/// CreateSecret and PutParameter each.
/// boto3 comes with moto[server] in the test venv.
const MOTO_IAM_SETUP: &str = r#"
import json, sys
import boto3
url, role, action = sys.argv[1], sys.argv[2], sys.argv[3]
secrets, parameters = json.loads(sys.argv[4]), json.loads(sys.argv[5])
kw = dict(endpoint_url=url, region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
iam = boto3.client("iam", **kw)
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
         "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/oidc.eks.example"},
         "Action": "sts:AssumeRoleWithWebIdentity"}]}
arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
policy = {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}
iam.put_role_policy(RoleName=role, PolicyName="allowed", PolicyDocument=json.dumps(policy))
sm = boto3.client("secretsmanager", **kw)
for name, value in secrets.items():
    sm.create_secret(Name=name, SecretString=value)
ssm = boto3.client("ssm", **kw)
for name, value in parameters.items():
    ssm.put_parameter(Name=name, Value=value, Type="SecureString")
print(arn)
"#;
